"""WhatsApp prompts going out: message shapes within the Cloud API limits, Graph failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.backends import DeliveryError
from gateway.config import ConfigError
from gateway.server import GATEWAY
from social.whatsapp import WhatsAppChannel
from social.whatsapp_messages import outgoing
from tests.social.conftest import MakeClient
from tests.social.fake_whatsapp import ACCESS_TOKEN, FakeGraphApi
from tests.social.test_whatsapp import whatsapp_spec

NPS = {
    "kind": "prompt",
    "text": "0-10?",
    "language": "en",
    "question_id": "nps",
    "question_type": "nps",
}
THANKS = {"kind": "closing", "text": "Thank you.", "language": "en"}


def event(*prompts: dict[str, Any], address: str = "whatsapp:+989121234567") -> dict[str, Any]:
    data = {"channel": "whatsapp", "provider": "support", "address": address, "response_id": "r1",
            "language": "en", "prompts": list(prompts)}  # fmt: skip
    return {"id": "evt-1", "type": "outbound.whatsapp", "data": data}


def choice(count: int, label: str = "Option") -> dict[str, Any]:
    choices = [{"code": f"c{n}", "label": f"{label} {n}", "key": None} for n in range(count)]
    return {**NPS, "question_type": "choice", "choices": choices}


@pytest.fixture
async def channel(seda: MakeClient, graph_api: FakeGraphApi) -> AsyncIterator[WhatsAppChannel]:
    client = await seda()
    made = WhatsAppChannel(client.app[GATEWAY], whatsapp_spec(graph_api))
    yield made
    await made.close()


@pytest.mark.parametrize(
    ("status", "code", "header", "retryable", "retry_after"),
    [
        (429, 130429, "30", True, 30.0),  # throughput
        (400, 131056, None, True, 6.0),  # pair rate limit: one message per 6 s to a user
        (400, 131047, None, False, None),  # more than 24 hours since the user wrote
        (400, 131026, None, False, None),  # undeliverable
        (401, 190, None, True, None),  # token expired: retried until the operator renews it
        (500, 131000, None, True, None),
        (503, 0, None, True, None),
    ],
)
async def test_graph_failures_are_typed_delivery_errors(
    channel: WhatsAppChannel,
    graph_api: FakeGraphApi,
    status: int,
    code: int,
    header: str | None,
    retryable: bool,
    retry_after: float | None,
) -> None:
    graph_api.fail_next(status, code, header)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(event(THANKS))
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == retry_after
    assert caught.value.recipient is (code == 131056)  # only the pair rate limit is one user's
    assert "989121234567" not in str(caught.value) and ACCESS_TOKEN not in str(caught.value)


async def test_a_number_under_its_pair_rate_limit_is_not_tried_again_before_it_ends(
    channel: WhatsAppChannel, graph_api: FakeGraphApi
) -> None:
    graph_api.fail_next(400, 131056)
    with pytest.raises(DeliveryError):
        await channel.deliver(event(THANKS))
    with pytest.raises(DeliveryError) as held:  # another event for the number: not sent
        await channel.deliver({**event(THANKS), "id": "evt-2"})
    assert held.value.recipient and 5.5 < (held.value.retry_after or 0) <= 6.0
    await channel.deliver(event(THANKS, address="whatsapp:+989127654321"))  # another: at once
    assert [m["to"] for m in graph_api.messages] == ["989127654321"]


async def test_a_retry_resumes_after_the_last_message_sent(
    channel: WhatsAppChannel, graph_api: FakeGraphApi
) -> None:
    graph_api.pass_next()
    graph_api.fail_next(500, 131000)  # the second message (the 6-10 list) fails
    with pytest.raises(DeliveryError):
        await channel.deliver(event(NPS, THANKS))
    await channel.deliver(event(NPS, THANKS))
    sent = graph_api.messages  # only what the fake accepted
    assert [m["type"] for m in sent] == ["interactive", "interactive", "text"]
    buttons = [m["interactive"]["action"]["button"] for m in sent[:2]]
    assert buttons == ["0–5", "6–10"]


async def test_a_bad_address_is_not_retried(channel: WhatsAppChannel) -> None:
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(event(THANKS, address="tel:+989121234567"))
    assert not caught.value.retryable


def test_buttons_lists_and_text_within_the_limits() -> None:
    (three,) = outgoing(choice(3, "A very long label that is too long"), "989121234567")
    buttons = three["interactive"]["action"]["buttons"]
    assert three["interactive"]["type"] == "button" and len(buttons) == 3
    assert all(len(b["reply"]["title"]) <= 20 for b in buttons)
    (four,) = outgoing(choice(4), "989121234567")
    assert four["interactive"]["type"] == "list"
    rows = four["interactive"]["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == ["c0", "c1", "c2", "c3"]
    many = outgoing(choice(23, "An answer with a label longer than a row title"), "989121234567")
    sizes = [len(m["interactive"]["action"]["sections"][0]["rows"]) for m in many]
    assert sizes == [8, 8, 7]
    row = many[0]["interactive"]["action"]["sections"][0]["rows"][0]
    assert len(row["title"]) == 24 and row["description"].startswith("An answer with a label")
    assert [m["interactive"]["action"]["button"] for m in many] == [
        "Choose 1/3",
        "Choose 2/3",
        "Choose 3/3",
    ]
    (ces,) = outgoing({**NPS, "question_type": "ces", "language": "ar"}, "989121234567")
    titles = [r["title"] for r in ces["interactive"]["action"]["sections"][0]["rows"]]
    assert titles == ["١", "٢", "٣", "٤", "٥", "٦", "٧"]
    (text,) = outgoing({**NPS, "question_type": "text"}, "989121234567")
    assert text["type"] == "text" and text["text"] == {"body": "0-10?"}


LINE = {"phone_number_id": 1065, "access_token": "t", "app_secret": "s", "verify_token": "v"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"phone_number_id": None}, "phone_number_id"),
        ({"access_token": None}, "access_token"),
        ({"app_secret": ""}, "app_secret"),
        ({"verify_token": None}, "verify_token"),
        ({"graph_base": "ftp://graph.example"}, "graph_base"),
        ({"invitation_template": {"language": "fa"}}, "invitation_template.name"),
        ({"invitation_template": "seda_invite"}, "invitation_template"),
    ],
)
async def test_config_errors(seda: MakeClient, change: dict[str, Any], problem: str) -> None:
    client = await seda()
    line = {k: v for k, v in {**LINE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=problem):
        WhatsAppChannel(client.app[GATEWAY], {"lines": {"support": line}})


def test_reprs_hold_no_token_or_secret(channel: WhatsAppChannel) -> None:
    shown = repr(channel.lines["support"])
    assert ACCESS_TOKEN not in shown and "6f1e0c2b9a8d47e3b5c4a1f0e9d8c7b6" not in shown


async def test_prompts_go_out_through_the_line_named_in_the_invitation(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    spec = whatsapp_spec(graph_api)
    spec["lines"]["sales"] = {**spec["lines"]["support"], "phone_number_id": "106540352299999"}
    client = await seda(whatsapp=spec)
    body = {"survey": "issue_resolved", "respondent": "whatsapp:+989121234567",
            "channel": "whatsapp", "line": "sales"}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()
    await graph_api.wait_for(1)
    assert graph_api.paths == ["/v21.0/106540352299999/messages"]


@pytest.mark.parametrize(
    ("respondent", "line", "status", "says"),
    [
        ("whatsapp:989121234567", None, 201, None),  # written as its webhooks write it: +
        ("tel:+989121234567", None, 422, "whatsapp:+<number>"),
        ("whatsapp:+9891", None, 422, "whatsapp:+<number>"),  # too short for a number
        ("whatsapp:+989121234567", "sales", 422, "no line 'sales'"),
    ],
)
async def test_an_invitation_address_is_checked_before_anything_is_stored(
    respondent: str, line: str | None, status: int, says: str | None,
    seda: MakeClient, graph_api: FakeGraphApi,
) -> None:  # fmt: skip
    client = await seda(whatsapp=whatsapp_spec(graph_api))
    body = {"survey": "issue_resolved", "respondent": respondent, "channel": "whatsapp",
            **({"line": line} if line else {})}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == status, await resp.text()
    if says is not None:
        assert says in (await resp.json())["error"]
        return
    invited = await resp.json()
    (sent,) = await graph_api.wait_for(1)
    assert sent["to"] == "989121234567"
    store = client.app[GATEWAY].store
    session = await store.session(invited["response_id"])
    assert session is not None and session.data["address"] == "whatsapp:+989121234567"
