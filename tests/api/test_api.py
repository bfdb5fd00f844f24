"""The generic API channel through the real aiohttp app, store and jsonl backend."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import server
from gateway.config import load
from gateway.server import GATEWAY, create_app
from gateway.store import StepWrite
from tests.answer_schema import assert_valid_answer
from tests.conftest import read_jsonl, write_config
from tests.forwarder.receiver import Answer, Received, Receiver, until
from tests.store import common

PHONE = "tel:+989121234567"


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> TestClient:  # type: ignore[type-arg]
    app = await create_app(load(write_config(tmp_path)))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def invite(client: TestClient, **extra: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    body = {
        "survey": "post_call_nps",
        "respondent": PHONE,
        "language": "fa",
        "context": {"agent": "a7", "queue": "billing"},
        **extra,
    }
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def say(client: TestClient, text: str, message_id: str | None = None) -> dict[str, Any]:  # type: ignore[type-arg]
    body: dict[str, Any] = {"respondent": PHONE, "text": text}
    if message_id:
        body["message_id"] = message_id
    resp = await client.post("/api/v1/messages", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        lines = read_jsonl(path)
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {len(read_jsonl(path))} of {count} events reached {path}")


async def test_persian_survey_end_to_end(client: TestClient, tmp_path: Path) -> None:  # type: ignore[type-arg]
    started = await invite(client)
    assert started["status"] == "accepted"
    assert started["prompts"][0]["question_id"] == "nps"
    first = await say(client, "۹", "m1")
    assert first["status"] == "accepted" and first["answers"] == 1
    assert first["prompts"][0]["question_id"] == "resolved"
    last = await say(client, "بله", "m2")
    assert last["completed"] is True

    events = await wait_for_lines(tmp_path / "answers.jsonl", 3)
    answers = [e["data"] for e in events if e["type"] == "answer.recorded"]
    for answer in answers:
        assert_valid_answer(answer)
    nps = next(a for a in answers if a["question_id"] == "nps")
    assert (nps["raw"], nps["value"], nps["context"]) == (
        "۹",
        9,
        {"agent": "a7", "queue": "billing"},
    )
    assert nps["respondent"]["addresses"] == [PHONE]
    assert [e["type"] for e in events] == [
        "answer.recorded",
        "answer.recorded",
        "response.completed",
    ]

    got = await client.get(f"/api/v1/responses/{started['response_id']}")
    assert got.status == 200
    state = await got.json()
    assert state["status"] == "completed"
    assert [a["value"] for a in state["answers"]] == [9, True]


async def test_repeated_message_id_changes_nothing(client: TestClient, tmp_path: Path) -> None:  # type: ignore[type-arg]
    await invite(client)
    first = await say(client, "3", "same-id")
    again = await say(client, "3", "same-id")
    assert first["prompts"] == again["prompts"]
    got = await client.get(f"/api/v1/responses/{first['response_id']}")
    state = await got.json()
    assert [a["value"] for a in state["answers"]] == [3]
    assert state["question_id"] == "reason"


async def test_invalid_reply_gets_the_invalid_prompt(client: TestClient) -> None:  # type: ignore[type-arg]
    await invite(client)
    result = await say(client, "خیلی خوب بود")
    assert result["status"] == "rejected"
    assert result["prompts"][0]["kind"] == "invalid"


BAD_REQUESTS = [
    ("not json", "/api/v1/messages", b"{nope", 400, "not valid JSON"),
    ("array body", "/api/v1/messages", b"[]", 400, "JSON object"),
    ("no text", "/api/v1/messages", b'{"respondent": "tel:+98912"}', 422, "text is required"),
    ("bad address", "/api/v1/messages", b'{"respondent": "0912", "text": "9"}', 422, "respondent"),
    ("unknown survey", "/api/v1/invitations", b'{"survey": "nope", "respondent": "tel:+98912"}', 422, "unknown survey"),
    ("unknown language", "/api/v1/invitations", b'{"survey": "post_call_nps", "respondent": "tel:+98912", "language": "de"}', 422, "no language"),
    ("nested context", "/api/v1/invitations", b'{"survey": "post_call_nps", "respondent": "tel:+98912", "context": {"a": {"b": 1}}}', 422, "context.a"),
    ("a NUL in a context value", "/api/v1/invitations", b'{"survey": "post_call_nps", "respondent": "tel:+98912", "context": {"ticket": "T\\u00001"}}', 422, "context.ticket"),
    ("an escape in a context value", "/api/v1/invitations", b'{"survey": "post_call_nps", "respondent": "tel:+98912", "context": {"agent": "\\u001b[31ma7"}}', 422, "context.agent"),
    ("a message id ending in a newline", "/api/v1/messages", b'{"respondent": "tel:+98912", "text": "9", "message_id": "m\\n"}', 422, "message_id"),
    ("an invitation id ending in a newline", "/api/v1/invitations", b'{"survey": "post_call_nps", "respondent": "tel:+98912", "invitation_id": "a\\n"}', 422, "invitation_id"),
    ("an address ending in a newline", "/api/v1/invitations", b'{"survey": "post_call_nps", "respondent": "mailto:a@b.example\\n"}', 422, "respondent"),
    ("an address with a NUL", "/api/v1/respondents/erase", b'{"respondent": "mailto:\\u0000"}', 422, "respondent"),
    ("a tel: address with letters", "/api/v1/messages", b'{"respondent": "tel:+98 912 CALL", "text": "9"}', 422, "tel:"),
    ("a tel: address with a tab", "/api/v1/messages", b'{"respondent": "tel:+98\\t912", "text": "9"}', 422, "tel:"),
    ("confidence true", "/api/v1/messages", b'{"respondent": "tel:+98912", "text": "9", "confidence": true}', 422, "confidence"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "path", "body", "status", "reason"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
async def test_bad_requests_are_refused_and_change_nothing(
    client: TestClient,  # type: ignore[type-arg]
    tmp_path: Path,
    label: str,
    path: str,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert reason in (await resp.json())["error"]
    await asyncio.sleep(0.1)
    assert read_jsonl(tmp_path / "answers.jsonl") == []


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/xml", None]
)
async def test_a_body_not_sent_as_json_gets_415(
    client: TestClient,  # type: ignore[type-arg]
    content_type: str | None,
) -> None:
    """curl -d without -H sends a form: the JSON is right, the media type is not."""
    body = b'{"survey": "post_call_nps", "respondent": "tel:+98912"}'
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await client.post("/api/v1/invitations", data=body, headers=headers)
    assert resp.status == 415
    assert "application/json" in (await resp.json())["error"]


async def test_oversized_body_gets_413(client: TestClient) -> None:  # type: ignore[type-arg]
    body = b'{"respondent": "tel:+98912", "text": "' + b"9" * 300_000 + b'"}'
    resp = await client.post(
        "/api/v1/messages", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert "Maximum request body size" in (await resp.json())["error"]  # JSON, as every error


async def test_aiohttp_refusals_on_the_api_are_json_too(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.get("/api/v1/messages")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert "error" in await resp.json()
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404 and "error" in await resp.json()
    resp = await client.get("/not-the-api")
    assert resp.status == 404 and resp.content_type == "text/plain"  # elsewhere: aiohttp's own


INVITATION_REPEATS = [
    ("the same body", {}, 200),
    ("the context's keys in another order", {"context": {"queue": "billing", "agent": "a7"}}, 200),
    ("another survey", {"survey": "ticket_csat"}, 409),
    ("another language", {"language": "en"}, 409),
    ("another context", {"context": {"agent": "a8", "queue": "billing"}}, 409),
    ("no context", {"context": None}, 409),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "change", "status"), INVITATION_REPEATS, ids=[c[0] for c in INVITATION_REPEATS]
)
async def test_a_repeated_invitation_id_replays_or_conflicts(
    client: TestClient,  # type: ignore[type-arg]
    label: str,
    change: dict[str, Any],
    status: int,
) -> None:
    first = await invite(client, invitation_id="crm-42")
    body = {
        "survey": "post_call_nps",
        "respondent": PHONE,
        "language": "fa",
        "context": {"agent": "a7", "queue": "billing"},
        "invitation_id": "crm-42",
        **change,
    }
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == status, await resp.text()
    if status == 200:
        assert (await resp.json())["response_id"] == first["response_id"]
    else:
        assert "invitation_id" in (await resp.json())["error"]
    state = await (await client.get(f"/api/v1/responses/{first['response_id']}")).json()
    assert state["status"] == "open"  # neither replaced nor changed


TEL_ADDRESSES = [
    ("spaces", "tel:+98 912 123 4567"),
    ("dashes", "tel:+98-912-123-4567"),
    ("parentheses and dots", "tel:+98 (912) 123.4567"),
    ("Persian digits", "tel:+۹۸۹۱۲۱۲۳۴۵۶۷"),
    ("Arabic-Indic digits with spaces", "tel:+٩٨ ٩١٢ ١٢٣ ٤٥٦٧"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "address"), TEL_ADDRESSES, ids=[c[0] for c in TEL_ADDRESSES])
async def test_a_tel_address_as_people_write_it_is_one_respondent(
    client: TestClient,  # type: ignore[type-arg]
    label: str,
    address: str,
) -> None:
    await invite(client, respondent=address)
    reply = await say(client, "9")  # sent as tel:+989121234567
    assert reply["status"] == "accepted" and reply["answers"] == 1
    state = await (await client.get(f"/api/v1/responses/{reply['response_id']}")).json()
    assert state["answers"][0]["respondent"]["addresses"] == [PHONE]


async def test_reply_without_survey_is_ignored(client: TestClient) -> None:  # type: ignore[type-arg]
    result = await say(client, "9")
    assert result["status"] == "ignored"


async def test_opt_out_blocks_later_invitations(client: TestClient) -> None:  # type: ignore[type-arg]
    await invite(client)
    result = await say(client, "لغو")
    assert result["status"] == "accepted" and result["reason"] == "opted out"
    resp = await client.post(
        "/api/v1/invitations",
        json={"survey": "post_call_nps", "respondent": PHONE, "language": "fa"},
    )
    assert resp.status == 409
    await say(client, "START")
    assert (await invite(client))["status"] == "accepted"


async def test_metrics_and_health(client: TestClient) -> None:  # type: ignore[type-arg]
    await invite(client)
    await say(client, "9")
    health = await client.get("/healthz")
    assert health.status == 200
    text = await (await client.get("/metrics")).text()
    assert 'seda_answers_total{channel="api",survey="post_call_nps"} 1.0' in text
    assert "seda_outbox_depth" in text
    assert "seda_request_seconds_bucket" in text


async def test_health_says_when_the_store_does_not_answer(client: TestClient) -> None:  # type: ignore[type-arg]
    health = await client.get("/healthz")
    assert health.status == 200
    assert await health.json() == {
        "status": "ok",
        "store": "ok",
        "backends_disabled": [],
        "backends_failing": {},
        "channels": {},
    }
    await client.app[GATEWAY].store.close()  # as after a fatal store error: nothing is stored
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["status"] == "unavailable"


async def test_health_says_when_a_backend_fails_until_it_delivers_again(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    answers = {"cem": 500}
    receiver = Receiver()

    async def cem(_: Received) -> Answer:
        return answers["cem"], {}

    receiver.behaviour = cem
    url = await receiver.start()
    try:
        backends = {"cem": {"type": "webhook", "url": url}}
        app = await create_app(load(write_config(tmp_path, backends=backends)))
        client = await aiohttp_client(app)
        await invite(client)
        await say(client, "9")  # an answer.recorded for the CEM
        await until(lambda: len(receiver.requests) >= 2)  # the first try and a retry
        health = await client.get("/healthz")
        assert health.status == 200  # answers are still taken and kept
        body = await health.json()
        assert body["status"] == "degraded" and list(body["backends_failing"]) == ["cem"]
        datetime.fromisoformat(body["backends_failing"]["cem"])  # since when, as ISO 8601
        metrics = await (await client.get("/metrics")).text()
        assert 'seda_backend_failing{backend="cem"} 1.0' in metrics

        answers["cem"] = 200
        await until(lambda: 200 in [r.answered for r in receiver.requests])
        await until(lambda: not app[server.FORWARDER].failing())
        body = await (await client.get("/healthz")).json()
        assert body["status"] == "ok" and body["backends_failing"] == {}
        metrics = await (await client.get("/metrics")).text()
        assert 'seda_backend_failing{backend="cem"} 0.0' in metrics
    finally:
        await receiver.close()


async def test_token_is_required_when_configured(tmp_path: Path, aiohttp_client: Any) -> None:
    app = await create_app(load(write_config(tmp_path, api={"token": "s3cret"})))
    client = await aiohttp_client(app)
    body = {"survey": "post_call_nps", "respondent": PHONE}
    assert (await client.post("/api/v1/invitations", json=body)).status == 401
    ok = await client.post(
        "/api/v1/invitations", json=body, headers={"Authorization": "Bearer s3cret"}
    )
    assert ok.status == 201


AUTHORIZATIONS = [
    ("none", {}, 401),
    ("the token", {"Authorization": "Bearer s3cret"}, 201),
    ("a lower-case scheme", {"Authorization": "bearer s3cret"}, 201),
    ("two spaces after the scheme", {"Authorization": "Bearer  s3cret"}, 201),
    ("a wrong token", {"Authorization": "Bearer s3cre"}, 401),
    ("the token as Basic", {"Authorization": "Basic s3cret"}, 401),
    ("the scheme alone", {"Authorization": "Bearer"}, 401),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "headers", "status"), AUTHORIZATIONS, ids=[c[0] for c in AUTHORIZATIONS]
)
async def test_the_bearer_token_is_read_as_rfc_7235_has_it(
    tmp_path: Path, aiohttp_client: Any, label: str, headers: dict[str, str], status: int
) -> None:
    app = await create_app(load(write_config(tmp_path, api={"token": "s3cret"})))
    client = await aiohttp_client(app)
    body = {"survey": "post_call_nps", "respondent": PHONE}
    resp = await client.post("/api/v1/invitations", json=body, headers=headers)
    assert resp.status == status, await resp.text()
    if status == 401:  # RFC 7235 3.1: a 401 carries its challenge
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "bearer token" in (await resp.json())["error"]


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
async def test_without_a_token_a_proxy_on_loopback_opens_nothing(
    client: TestClient,  # type: ignore[type-arg]
    tmp_path: Path,
    header: str,
) -> None:
    """nginx on the same machine connects from 127.0.0.1 for clients anywhere."""
    body = {"survey": "post_call_nps", "respondent": PHONE}
    resp = await client.post("/api/v1/invitations", json=body, headers={header: "203.0.113.9"})
    assert resp.status == 403
    assert "api.token" in (await resp.json())["error"]
    await asyncio.sleep(0.1)
    assert read_jsonl(tmp_path / "answers.jsonl") == []


async def test_a_reused_message_id_never_returns_another_respondents_result(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    await invite(client)
    mine = await say(client, "3", "shared-id")
    other = {"respondent": "tel:+989350000000", "text": "9", "message_id": "shared-id"}
    resp = await client.post("/api/v1/messages", json=other)
    theirs = await resp.json()
    assert theirs["status"] == "ignored"  # they have no survey: not a replay of my result
    assert theirs["prompts"] == [] and mine["prompts"] != []


async def test_a_late_repeat_of_an_old_message_changes_nothing(client: TestClient) -> None:  # type: ignore[type-arg]
    await invite(client)
    first = await say(client, "3", "old")
    await say(client, "خط قطع می‌شد", "newer")
    late = await say(client, "3", "old")  # the provider retries the first message much later
    assert late["prompts"] == first["prompts"]
    state = await (await client.get(f"/api/v1/responses/{first['response_id']}")).json()
    assert [a["question_id"] for a in state["answers"]] == ["nps", "reason"]
    assert state["question_id"] == "resolved"
    after = await say(client, "بله", "last")
    assert after["completed"] is True


async def pruning(
    tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch, **config: Any
) -> TestClient:  # type: ignore[type-arg]
    """A client of Seda with these config overrides, pruning every 50 ms."""
    monkeypatch.setattr(server, "PRUNE_SECONDS", 0.05)
    return await aiohttp_client(await create_app(load(write_config(tmp_path, **config))))  # type: ignore[no-any-return]


async def rows_until(db: Path, query: str, expected: list[tuple[Any, ...]]) -> list[Any]:
    """The query's rows once they are `expected` (or after 10 s, as they are then)."""
    for _ in range(200):
        with sqlite3.connect(db) as conn:
            rows = conn.execute(query).fetchall()
        if rows == expected:
            break
        await asyncio.sleep(0.05)
    return rows


async def test_delivered_events_past_their_retention_are_deleted(
    tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await pruning(tmp_path, aiohttp_client, monkeypatch, outbox={"keep_delivered": 0})
    await invite(client)
    await say(client, "۹")
    await wait_for_lines(tmp_path / "answers.jsonl", 1)  # delivered: the row may go now
    statuses = await rows_until(
        tmp_path / "seda.db", "SELECT status, COUNT(*) FROM outbox GROUP BY 1", []
    )
    assert statuses == []  # every row was delivered, then deleted
    with sqlite3.connect(tmp_path / "seda.db") as db:  # the answer itself stays
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (1,)


async def test_finished_responses_past_their_retention_are_deleted(
    tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await pruning(tmp_path, aiohttp_client, monkeypatch, retention={"responses": 0})
    done = (await invite(client))["response_id"]
    await say(client, "۹")
    assert (await say(client, "بله"))["completed"] is True
    waiting = (await invite(client, respondent="tel:+989120000002"))["response_id"]
    db = tmp_path / "seda.db"
    sessions = await rows_until(db, "SELECT response_id FROM sessions", [(waiting,)])
    assert sessions == [(waiting,)]  # the open one stays
    assert await rows_until(db, "SELECT COUNT(*) FROM answers", [(0,)]) == [(0,)]
    events = read_jsonl(tmp_path / "answers.jsonl")  # every event of it went out
    assert [e["type"] for e in events if e["data"].get("response_id") == done] == [
        "answer.recorded",
        "answer.recorded",
        "response.completed",
    ]
    assert (await client.get(f"/api/v1/responses/{done}")).status == 404
    assert (await client.get(f"/api/v1/responses/{waiting}")).status == 200


async def test_a_pruned_response_s_recordings_go_to_their_channel(
    tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pruning loop hands the files the deleted answers name to the channels that keep
    them (the voice channel deletes its recordings; tests/ivr covers that deletion)."""
    client = await pruning(tmp_path, aiohttp_client, monkeypatch, retention={"responses": 0})
    gateway = client.app[GATEWAY]
    handed: list[list[dict[str, Any]]] = []

    async def keeper(answers: Any) -> int:
        handed.append(list(answers))
        return len(answers)

    gateway.file_keepers.append(keeper)
    spoken = {**common.answer("a1", "call"), "channel": "ivr", "recording": "2026-12-01/call-r.wav"}
    finished = common.session("call", status="completed", channel="ivr")
    await gateway.store.commit(StepWrite(session=finished, answers=(spoken,)))
    for _ in range(100):
        if handed:
            break
        await asyncio.sleep(0.05)
    assert handed == [[{"channel": "ivr", "recording": "2026-12-01/call-r.wav"}]]
    assert await gateway.store.session("call") is None


async def test_erasing_a_respondent_forgets_them_and_tells_the_backends(
    client: TestClient,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    done = (await invite(client, invitation_id="inv-1"))["response_id"]
    await say(client, "۹", "m1")
    await say(client, "بله", "m2")
    stopped = (await invite(client))["response_id"]
    await say(client, "لغو", "m3")  # opts out: the opt-out outlives the erasure
    other = "tel:+989120000002"
    kept = (await invite(client, respondent=other))["response_id"]
    before = await wait_for_lines(tmp_path / "answers.jsonl", 5)
    me = next(e["data"]["respondent"]["id"] for e in before if e["type"] == "answer.recorded")

    resp = await client.post(
        "/api/v1/respondents/erase", json={"respondent": "tel:+98912-123-4567"}
    )
    assert resp.status == 200, await resp.text()
    erased = await resp.json()
    assert erased["respondent_id"] == me
    assert (erased["responses"], erased["answers"], erased["files"]) == (2, 2, 0)
    # Two answers and the completion; the abandonment and the opt-out. Ids: inv-1, m1-m3.
    assert (erased["events"], erased["message_ids"]) == (5, 4)

    with sqlite3.connect(tmp_path / "seda.db") as db:
        assert db.execute("SELECT response_id FROM sessions").fetchall() == [(kept,)]
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)
        keys = {k for (k,) in db.execute("SELECT DISTINCT order_key FROM outbox")}
        assert keys <= {kept, f"erased:{me}"}  # only the erasure event is left of them
        ids = db.execute("SELECT message_id FROM inbound_ids").fetchall()
        assert not [i for (i,) in ids if PHONE in i]
    for response_id in (done, stopped):
        assert (await client.get(f"/api/v1/responses/{response_id}")).status == 404
    assert (await client.get(f"/api/v1/responses/{kept}")).status == 200
    again = await client.post(
        "/api/v1/invitations",
        json={"survey": "post_call_nps", "respondent": PHONE, "language": "fa"},
    )
    assert again.status == 409  # still opted out

    events = await wait_for_lines(tmp_path / "answers.jsonl", len(before) + 1)
    told = events[len(before) :]
    assert [(e["type"], e["data"]) for e in told] == [
        ("respondent.erased", {"respondent": {"id": me}, "responses": [done, stopped]})
    ]
    assert PHONE.removeprefix("tel:") not in json.dumps(told)


@pytest.mark.parametrize("body", [{}, {"respondent": "nobody"}, {"respondent": "tel:abc"}, []])
async def test_a_bad_erasure_request_is_refused_and_changes_nothing(
    client: TestClient,  # type: ignore[type-arg]
    tmp_path: Path,
    body: Any,
) -> None:
    await invite(client)
    resp = await client.post("/api/v1/respondents/erase", json=body)
    assert resp.status in (400, 422), await resp.text()
    with sqlite3.connect(tmp_path / "seda.db") as db:
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (1,)


async def test_erasure_is_served_without_the_api_channel_and_behind_its_token(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    config = write_config(tmp_path, channels={"api": {"enabled": False}}, api={"token": "t0k"})
    client = await aiohttp_client(await create_app(load(config)))
    body = {"respondent": PHONE}
    headers = {"Authorization": "Bearer t0k"}
    assert (await client.post("/api/v1/respondents/erase", json=body)).status == 401
    resp = await client.post("/api/v1/invitations", json=body, headers=headers)
    assert resp.status == 404  # no API channel
    resp = await client.post("/api/v1/respondents/erase", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["responses"] == 0


async def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    client: TestClient,  # type: ignore[type-arg]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Counted as 499 (client closed request), not logged as a failure of Seda's."""
    _, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 50\r\n\r\n{\"")  # fmt: skip
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    metrics: str = await (await client.get("/metrics")).text()
    assert 'seda_request_seconds_count{route="/api/v1/messages",status="4xx"} 1.0' in metrics


async def test_a_bearer_token_that_is_not_utf8_is_401(tmp_path: Path, aiohttp_client: Any) -> None:
    app = await create_app(load(write_config(tmp_path, api={"token": "real-token"})))
    client = await aiohttp_client(app)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"GET /api/v1/responses/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Authorization: Bearer \xff\xfe\r\n\r\n")  # fmt: skip
    assert b" 401 " in await reader.readline()
    writer.close()
