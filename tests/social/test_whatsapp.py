"""WhatsApp Cloud API webhooks (real-shaped, signed payload files) through the real app."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.server import GATEWAY
from social.whatsapp import signed
from tests.answer_schema import assert_valid_answer
from tests.conftest import read_jsonl
from tests.social.conftest import TEST_FLOWS, Client, MakeClient
from tests.social.fake_whatsapp import (
    ACCESS_TOKEN,
    APP_SECRET,
    DATA,
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    FakeGraphApi,
    payload,
    signature,
)

ADDRESS = "whatsapp:+989121234567"


def whatsapp_spec(graph_api: FakeGraphApi, **overrides: Any) -> dict[str, Any]:
    line = {"phone_number_id": PHONE_NUMBER_ID, "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN, "graph_base": graph_api.url, **overrides}  # fmt: skip
    return {"enabled": True, "lines": {"support": line}}


async def post(client: Client, name: str, sig: str | None = None) -> Any:
    raw = payload(name)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sig or signature(raw)}
    return await client.post("/whatsapp/support", data=raw, headers=headers)


async def ok(client: Client, name: str) -> dict[str, Any]:
    resp = await post(client, name)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def invite(client: Client, survey: str = "post_call_nps") -> str:
    body = {"survey": survey, "respondent": ADDRESS, "language": "fa", "channel": "whatsapp"}
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["response_id"])


async def answers_of(client: Client, response_id: str) -> list[dict[str, Any]]:
    return await client.app[GATEWAY].store.answers_for(response_id)  # type: ignore[no-any-return]


@pytest.fixture
async def client(seda: MakeClient, graph_api: FakeGraphApi) -> Client:
    return await seda(whatsapp=whatsapp_spec(graph_api))  # type: ignore[no-any-return]


async def test_verification_challenge(client: Client) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    resp = await client.get("/whatsapp/support", params=query)
    assert (resp.status, await resp.text()) == (200, "1158201444")
    for wrong in (
        {"hub.verify_token": "guess"},
        {"hub.mode": "unsubscribe"},
        {"hub.challenge": ""},
    ):
        resp = await client.get("/whatsapp/support", params={**query, **wrong})
        assert resp.status == 403
    assert (await client.get("/whatsapp/other", params=query)).status == 404


def test_signature_vectors_computed_outside_seda() -> None:
    """The openssl vectors: Seda's own check accepts each and refuses it for a changed byte or
    another secret; the tests' signer (which signs every other request here) matches them."""
    vectors = json.loads((DATA / "signature_vectors.json").read_text("utf-8"))
    secret = vectors["app_secret"]
    for vector in vectors["vectors"]:
        raw = (DATA / vector["file"]).read_bytes()
        assert signed(raw, vector["signature"], secret)
        assert not signed(raw + b" ", vector["signature"], secret)
        assert not signed(raw, vector["signature"], secret + "x")
        assert signature(raw, secret) == vector["signature"]


async def test_a_whole_persian_survey_with_an_invitation_template(
    seda: MakeClient, graph_api: FakeGraphApi, tmp_path: Path
) -> None:
    template = {"name": "seda_nps_invite", "language": "fa"}
    client = await seda(whatsapp=whatsapp_spec(graph_api, invitation_template=template))
    response_id = await invite(client)
    (first,) = await graph_api.wait_for(1)  # nobody wrote in 24 hours: only a template may go
    assert first["type"] == "template" and first["to"] == "989121234567"
    assert first["template"] == {"name": "seda_nps_invite", "language": {"code": "fa"}}
    assert graph_api.paths[0] == f"/v21.0/{PHONE_NUMBER_ID}/messages"
    assert graph_api.authorizations[0] == f"Bearer {ACCESS_TOKEN}"

    assert (await ok(client, "list_reply_nps_3"))["status"] == "accepted"
    reason_prompt = (await graph_api.wait_for(2))[1]
    assert reason_prompt["type"] == "text" and reason_prompt["text"]["body"].startswith("متأسفیم")
    await ok(client, "text_reason_fa")
    resolved_prompt = (await graph_api.wait_for(3))[2]
    assert resolved_prompt["type"] == "interactive"
    assert resolved_prompt["interactive"]["type"] == "button"
    assert resolved_prompt["interactive"]["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": "yes", "title": "بله"}},
        {"type": "reply", "reply": {"id": "no", "title": "خیر"}},
    ]
    await ok(client, "button_reply_yes")
    closing = (await graph_api.wait_for(4))[3]
    assert closing["type"] == "text"

    nps, reason, resolved = await answers_of(client, response_id)
    for answer in (nps, reason, resolved):
        assert_valid_answer(answer)
        assert answer["channel"] == "whatsapp" and answer["provider"] == "support"
        assert answer["respondent"]["addresses"] == [ADDRESS]
    assert (nps["value"], nps["raw"], nps["input_mode"]) == (3, "3", "button")
    assert nps["message_id"] == "wamid.HBgMOTg5MTIxMjM0NTY3FQIAEhgWM0VCMDk4QTRCRjE4MzE1QTQ5MjI0RQA="
    assert (reason["value"], reason["input_mode"]) == ("پشتیبان تلفنی دیر جواب داد", "text")
    assert (resolved["value"], resolved["input_mode"]) == (True, "button")
    for _ in range(100):
        types = [e["type"] for e in read_jsonl(tmp_path / "answers.jsonl")]
        if "response.completed" in types:
            break
        await asyncio.sleep(0.02)
    assert types.count("answer.recorded") == 3 and "response.completed" in types


async def test_nps_goes_out_as_two_lists(client: Client, graph_api: FakeGraphApi) -> None:
    await invite(client)  # no template configured: the interactive prompt is sent as is
    low, high = await graph_api.wait_for(2)
    for message in (low, high):
        assert message["type"] == "interactive" and message["interactive"]["type"] == "list"
        rows = [r for s in message["interactive"]["action"]["sections"] for r in s["rows"]]
        assert len(rows) <= 10 and all(len(r["title"]) <= 24 for r in rows)
        assert len(message["interactive"]["action"]["button"]) <= 20
    rows = [
        [r["id"] for s in m["interactive"]["action"]["sections"] for r in s["rows"]]
        for m in (low, high)
    ]
    assert rows == [["0", "1", "2", "3", "4", "5"], ["6", "7", "8", "9", "10"]]
    assert low["interactive"]["body"]["text"].startswith("از صفر تا ده")
    assert (low["interactive"]["action"]["button"], high["interactive"]["action"]["button"]) == (
        "۰–۵",
        "۶–۱۰",
    )


async def test_inside_the_window_no_template_is_used(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    client = await seda(
        whatsapp=whatsapp_spec(graph_api, invitation_template={"name": "seda_nps_invite"})
    )
    assert (await ok(client, "text_nine_fa"))["status"] == "ignored"  # no survey yet, but a window
    await invite(client)
    sent = await graph_api.wait_for(2)
    assert [m["type"] for m in sent] == ["interactive", "interactive"]


async def test_template_quick_reply_answers_the_first_question(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    client = await seda(
        whatsapp=whatsapp_spec(graph_api, invitation_template={"name": "seda_resolved"})
    )
    response_id = await invite(client, "issue_resolved")
    (sent,) = await graph_api.wait_for(1)
    assert sent["template"] == {"name": "seda_resolved", "language": {"code": "fa"}}  # the survey's
    await ok(client, "template_button_no")
    (answer,) = await answers_of(client, response_id)
    assert (answer["value"], answer["raw"], answer["input_mode"]) == (False, "no", "button")


async def test_a_forged_signature_is_403_and_changes_nothing(
    client: Client, graph_api: FakeGraphApi
) -> None:
    response_id = await invite(client)
    raw = payload("list_reply_nps_3")
    reserialized = json.dumps(json.loads(raw), ensure_ascii=False).encode()  # Meta signs raw bytes
    for sig in (
        "sha256=" + "0" * 64,
        signature(raw, "another-app-secret"),
        signature(reserialized),
        "",
        "md5=abc",
    ):
        resp = await client.post(
            "/whatsapp/support", data=raw, headers={"X-Hub-Signature-256": sig}
        )
        assert resp.status == 403, sig
    resp = await client.post("/whatsapp/support", data=raw)
    assert resp.status == 403
    assert await answers_of(client, response_id) == []


async def test_a_repeated_wamid_gives_one_answer(client: Client) -> None:
    response_id = await invite(client)
    first = await ok(client, "text_nine_fa")
    again = await ok(client, "text_nine_fa")
    assert first["status"] == again["status"] == "accepted"
    (answer,) = await answers_of(client, response_id)
    assert (answer["value"], answer["raw"], answer["input_mode"]) == (9, "۹", "text")


async def test_status_callbacks_and_other_messages_change_nothing(client: Client) -> None:
    response_id = await invite(client)
    assert await ok(client, "status_delivered") == {
        "status": "ignored", "reason": "no messages (status callbacks carry no answers)"}  # fmt: skip
    assert (await ok(client, "image"))["status"] == "ignored"
    assert (await ok(client, "other_number"))["status"] == "ignored"  # a number no line has
    assert await answers_of(client, response_id) == []


async def test_status_callbacks_are_counted_and_failures_logged_by_code(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await ok(client, "status_delivered")
    assert (await ok(client, "status_failed"))["status"] == "ignored"
    (failed,) = [r for r in caplog.records if r.getMessage() == "whatsapp message not delivered"]
    assert failed.levelno == logging.WARNING
    assert failed.fields == {"line": "support", "code": 131047}  # type: ignore[attr-defined]
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "989121234567" not in logged and "24 hours" not in logged
    metrics = await (await client.get("/metrics")).text()
    assert 'seda_whatsapp_statuses_total{line="support",status="delivered"} 1.0' in metrics
    assert 'seda_whatsapp_statuses_total{line="support",status="failed"} 1.0' in metrics


async def test_malformed_bodies_and_unknown_lines(client: Client) -> None:
    for raw in (b"{not json", b"[]", b'{"object": "whatsapp_business_account", "entry": 5}'):
        resp = await client.post(
            "/whatsapp/support", data=raw, headers={"X-Hub-Signature-256": signature(raw)}
        )
        assert resp.status == 400, raw
    raw = b'{"object": "page", "entry": []}'
    resp = await client.post(
        "/whatsapp/support", data=raw, headers={"X-Hub-Signature-256": signature(raw)}
    )
    assert (await resp.json())["status"] == "ignored"
    resp = await client.post(
        "/whatsapp/other", data=raw, headers={"X-Hub-Signature-256": signature(raw)}
    )
    assert resp.status == 404


# After an NPS of 3 (a detractor, so the free-text "reason" question is asked next): a message
# that comes next, and the answers it leaves. A tapped row or button must be one the current
# question offers.
AFTER_NPS = {
    "the NPS list tapped again": ("list_reply_nps_3_again", "ignored", []),
    "an earlier yes button": ("button_reply_yes", "ignored", []),
    "the reason, typed": ("text_reason_fa", "accepted", ["پشتیبان تلفنی دیر جواب داد"]),
}


@pytest.mark.parametrize(("name", "status", "reasons"), AFTER_NPS.values(), ids=AFTER_NPS.keys())
async def test_a_button_the_current_question_does_not_offer_answers_nothing(
    client: Client, graph_api: FakeGraphApi, name: str, status: str, reasons: list[str]
) -> None:
    """Before, the list tapped again recorded "3" as the reason, and the yes button "yes"."""
    response_id = await invite(client)
    assert (await ok(client, "list_reply_nps_3"))["status"] == "accepted"
    assert (await ok(client, name))["status"] == status
    nps, *rest = await answers_of(client, response_id)
    assert (nps["question_id"], nps["value"]) == ("nps", 3)
    assert [(a["question_id"], a["value"]) for a in rest] == [("reason", r) for r in reasons]


# After 4 stars tapped on rated_visit's first list (stars 1-5; effort 1-7 is asked next): a tap
# that comes next, and the answers it leaves. Each names the message it was on (context.id).
EARLIER_LISTS = {
    "the stars list tapped again": ("list_reply_stars_4_again", "ignored", [("stars", 4)]),
    "4 on the effort list": ("list_reply_effort_4", "accepted", [("stars", 4), ("effort", 4)]),
}


@pytest.mark.parametrize(
    ("name", "status", "expected"), EARLIER_LISTS.values(), ids=EARLIER_LISTS.keys()
)
async def test_a_tap_on_an_earlier_questions_list_answers_nothing(
    seda: MakeClient,
    graph_api: FakeGraphApi,
    name: str,
    status: str,
    expected: list[tuple[str, int]],
) -> None:
    """Before, the stars list tapped again recorded 4 as the effort answer: both offer 4."""
    client = await seda(flows=TEST_FLOWS, whatsapp=whatsapp_spec(graph_api))
    response_id = await invite(client, "rated_visit")
    await graph_api.wait_for(1)  # the stars list: the fake's wamid ...000001
    assert (await ok(client, "list_reply_stars_4"))["status"] == "accepted"
    await graph_api.wait_for(2)  # the effort list: ...000002
    assert (await ok(client, name))["status"] == status
    stored = await answers_of(client, response_id)
    assert [(a["question_id"], a["value"]) for a in stored] == expected
