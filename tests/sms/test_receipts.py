"""Delivery receipts: each provider's send gives ids, its real receipt updates the stored row.

One row per provider: the fake provider API on loopback records the send and answers with a
realistic body carrying an id; the provider's receipt (signed where the provider signs) then goes
to Seda's real app, and the row in `deliveries` and the seda_sms_receipts_total counter show it.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from aiohttp import web

from gateway.config import load
from gateway.server import GATEWAY, create_app
from sms import generic, plivo, twilio, vonage
from tests.conftest import write_config
from tests.sms.helpers import (
    DATA,
    PUBLIC,
    TWILIO_ACCOUNT,
    TWILIO_TOKEN,
    FakeProviders,
    Payload,
    invite,
    payload,
)

RESPONDENT = "tel:+989121234567"
RECEIPTS = DATA / "receipts"
VONAGE_SECRET = "vonage-signature-secret"
PLIVO_TOKEN = "plivo-auth-token"
GENERIC_SECRET = "generic-shared-secret"
NONCE = "05429567804466091622"
# What each provider's send API answers (recorded shapes, ids made up), by a path suffix.
SEND_ANSWERS = {
    "/Messages.json": (201, "twilio_send.json", "application/json"),
    "/sms/json": (200, "vonage_send.json", "application/json"),
    "/Message/": (202, "plivo_send.json", "application/json"),
    "/send": (200, "jasmin_send.txt", "text/plain"),
    "/sms/send.json": (200, "kavenegar_send.json", "application/json"),
}


class ReceiptProviders(FakeProviders):
    """The shared fake provider API, answering sends with the recorded bodies above and
    Kavenegar's status.json with `statuses` (the status code each message id has now)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, int] = {}
        self.status_queries: list[str] = []
        # Awaited before a send is answered (a provider that calls back before it answers).
        self.before_answer: Callable[[], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        """status.json and the sends of SEND_ANSWERS here; the rest as the shared fake does."""
        if request.path.endswith("/sms/status.json"):
            return self.status(request)
        path = request.path
        answer = next((a for s, a in SEND_ANSWERS.items() if path.endswith(s)), None)
        if answer is None or path.startswith("/generic/"):
            return await super().handle(request)
        if request.content_type == "application/json":
            body: Any = await request.json()
        else:
            body = dict(await request.post())
        self.sent.append({"method": request.method, "path": request.path,
                          "query": dict(request.query), "body": body})  # fmt: skip
        status, name, content_type = answer
        if self.before_answer is not None:
            await self.before_answer()
        return web.Response(status=status, body=(RECEIPTS / name).read_bytes(),
                            content_type=content_type)  # fmt: skip

    def status(self, request: web.Request) -> web.Response:
        """Kavenegar sms/status.json?messageid=a,b: the recorded answer, one entry per id."""
        ids = request.query.get("messageid", "").split(",")
        self.status_queries.append(request.query.get("messageid", ""))
        envelope = json.loads((RECEIPTS / "kavenegar_status.json").read_text("utf-8"))
        template = envelope["entries"][0]
        envelope["entries"] = [
            {**template, "messageid": int(i), "status": self.statuses.get(i, 100)} for i in ids
        ]
        return web.json_response(envelope, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def lines() -> dict[str, Any]:
    """One line per provider, each with a public URL (where its receipts are to go)."""
    return {
        "tw1": {"provider": "twilio", "number": "+982191001234", "account_sid": TWILIO_ACCOUNT,
                "auth_token": TWILIO_TOKEN},
        "vo1": {"provider": "vonage", "number": "982191001234", "api_key": "abcd1234",
                "api_secret": "api-secret", "signature_secret": VONAGE_SECRET,
                "signature_method": "sha256"},
        "pl1": {"provider": "plivo", "number": "+982191001234", "auth_id": "MAXXXXXXXXXXXXXXXXXX",
                "auth_token": PLIVO_TOKEN},
        "ka1": {"provider": "kannel", "number": "982191001234", "token": "kannel-token",
                "username": "seda", "password": "kannel-pass"},
        "ja1": {"provider": "jasmin", "number": "982191001234", "token": "jasmin-token",
                "username": "seda", "password": "jasmin-pass"},
        "ge1": {"provider": "generic", "number": "+982191001234", "secret": GENERIC_SECRET},
    }  # fmt: skip


async def start(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, chosen: dict[str, Any]
) -> tuple[Any, ReceiptProviders]:
    """The real app with these sms lines, each behind PUBLIC, and the fake provider API."""
    fake = ReceiptProviders()
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    for name, spec in chosen.items():
        spec.setdefault("base_url", base)
        spec.setdefault("public_url", f"{PUBLIC}/sms/{name}")
        if spec["provider"] == "generic":
            spec.setdefault("send_url", base + "/generic/send")
    sms = {"enabled": True, "lines": chosen}
    path = write_config(tmp_path, channels={"api": {"enabled": True}, "sms": sms})
    client = await aiohttp_client(await create_app(load(path)))
    return client, fake


async def invited_on(
    line: str, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> tuple[Any, str, list[dict[str, Any]]]:
    """A line that has sent one invitation: the client, its response id, its sent rows."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {line: lines()[line]})
    invited = await invite(client, RESPONDENT, line=line)
    await fake.wait(1)
    return client, invited["response_id"], await sent_rows(client, invited["response_id"])


async def sent_rows(client: Any, response_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The deliveries rows of a response, once `count` are recorded (fails after about 4 s)."""
    store = client.app[GATEWAY].store
    for _ in range(200):
        rows: list[dict[str, Any]] = await store.deliveries.for_response(response_id)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} sent messages were recorded")


async def receipts_metric(client: Any, line: str, status: str) -> float:
    """seda_sms_receipts_total{line, status} as /metrics shows it (0 when absent)."""
    text = await (await client.get("/metrics")).text()
    pattern = rf'^seda_sms_receipts_total\{{line="{line}",status="{status}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def sign(line: str, request: Payload, forge: bool = False) -> tuple[str, dict[str, str], bytes]:
    """The request as the provider sends it: path, headers and body, signed (or forged)."""
    path, headers, body = request.path, dict(request.headers), request.body
    if line == "tw1":
        token = "not-the-token" if forge else TWILIO_TOKEN
        headers["X-Twilio-Signature"] = twilio.signature(PUBLIC + path, request.form(), token)
    elif line == "vo1":
        base, _, query = path.partition("?")
        params = dict(parse_qsl(query))
        params["timestamp"] = str(int(time.time()))
        secret = "wrong" if forge else VONAGE_SECRET
        params["sig"] = vonage.signature(params, secret, "sha256").upper()
        path = f"{base}?{urlencode(params)}"
    elif line == "pl1":
        base = plivo.base_string("POST", PUBLIC + path, request.form())
        headers["X-Plivo-Signature-V3"] = plivo.signature(
            base, NONCE, "x" if forge else PLIVO_TOKEN
        )
        headers["X-Plivo-Signature-V3-Nonce"] = NONCE
    elif line == "ge1":
        stamp = str(int(time.time()))
        headers["X-Seda-Timestamp"] = stamp
        headers["X-Seda-Signature"] = generic.signature(
            "x" if forge else GENERIC_SECRET, stamp, body
        )
    return path, headers, body


def kannel_dlr(sent: dict[str, Any], value: str) -> Payload:
    """The request Kannel makes for a DLR: the dlr-url Seda gave it, %d replaced."""
    url = sent["query"]["dlr-url"]
    assert url.startswith(f"{PUBLIC}/sms/ka1?") and url.endswith("&status=%d")
    return Payload("GET", url.removeprefix(PUBLIC).replace("%d", value), {}, b"")


def generic_status(sent: dict[str, Any]) -> Payload:
    """The generic gateway's status notification for the message it was sent (by its id)."""
    request = payload("receipts/generic_status.http")
    return Payload(request.method, request.path, request.headers,
                   request.body.replace(b"{id}", sent["body"]["id"].encode()))  # fmt: skip


Receipt = Callable[[dict[str, Any]], Payload]
CASES: list[tuple[str, str, Receipt, list[str], str, str, str | None, int, str | None]] = [
    # label, line, the receipt (from what was sent), ids recorded at send, the id it names,
    # normalised status, raw status + error, HTTP status, body of the answer
    ("twilio delivered", "tw1", lambda s: payload("receipts/twilio_delivered.http"),
     ["SM7a0c3f6e1b2d4c5e8f9a0b1c2d3e4f5a"], "delivered", "delivered", None, 200, "<Response>"),
    ("twilio undelivered 30003", "tw1", lambda s: payload("receipts/twilio_undelivered.http"),
     ["SM7a0c3f6e1b2d4c5e8f9a0b1c2d3e4f5a"], "undelivered", "undelivered", "30003", 200, None),
    ("vonage part delivered", "vo1", lambda s: payload("receipts/vonage_dlr.http"),
     ["1B00000A1C2D3E41", "1B00000A1C2D3E42"], "delivered", "delivered", None, 204, ""),
    ("plivo failed 300", "pl1", lambda s: payload("receipts/plivo_failed.http"),
     ["3c1d8e2a-1c3d-11f0-9b1e-0242ac110003"], "failed", "failed", "300", 200, "<Response>"),
    ("kannel dlr 1", "ka1", lambda s: kannel_dlr(s, "1"), [], "delivered", "1", None, 200, ""),
    ("kannel dlr 16", "ka1", lambda s: kannel_dlr(s, "16"), [], "failed", "16", None, 200, ""),
    ("kannel dlr 2", "ka1", lambda s: kannel_dlr(s, "2"), [], "undelivered", "2", None, 200, ""),
    ("jasmin level 2 DELIVRD", "ja1", lambda s: payload("receipts/jasmin_delivrd.http"),
     ["9d4c8a7e-2f1b-4e3a-b5c6-7d8e9f0a1b2c"], "delivered", "DELIVRD", None, 200, "ACK/Jasmin"),
    ("generic undelivered", "ge1", generic_status, [], "undelivered", "undelivered", "E41", 200,
     '"reply": null'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "line", "receipt", "ids", "status", "raw", "error", "code", "body"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_receipt_updates_the_sent_message(
    label: str, line: str, receipt: Receipt, ids: list[str], status: str, raw: str,
    error: str | None, code: int, body: str | None, tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:  # fmt: skip
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {line: lines()[line]})
    invited = await invite(client, RESPONDENT, line=line)
    (sent,) = await fake.wait(1)
    rows = await sent_rows(client, invited["response_id"], max(1, len(ids)))
    event_id = rows[0]["event_id"]
    # Kannel and the generic gateway give no id: the message is named by Seda's (the event id).
    assert [r["message_id"] for r in rows] == (ids or [event_id])
    assert {(r["status"], r["line"], r["provider"], r["channel"], r["event_id"]) for r in rows} == {
        ("sent", line, lines()[line]["provider"], "sms", event_id)
    }
    assert_asked_for_receipts(line, sent, event_id)

    path, headers, data = sign(line, receipt(sent))
    request = receipt(sent)
    resp = await client.request(request.method, path, data=data, headers=headers)
    text = await resp.text()
    assert resp.status == code, text
    if body is not None:
        assert body in text if body else text == ""
    after = {r["message_id"]: r for r in await sent_rows(client, invited["response_id"])}
    named = after[ids[0] if ids else event_id]
    assert (named["status"], named["raw_status"], named["error"]) == (status, raw, error)
    assert named["updated_at"] >= named["sent_at"]
    for other in ids[1:]:  # the other part of the message has no receipt yet
        assert after[other]["status"] == "sent"
    assert await receipts_metric(client, line, status) == 1.0


def assert_asked_for_receipts(line: str, sent: dict[str, Any], event_id: str) -> None:
    """The send asked the provider to report to the line's public URL."""
    body, query = sent["body"], sent["query"]
    public = f"{PUBLIC}/sms/{line}"
    if line == "tw1":
        assert body["StatusCallback"] == public
    elif line == "vo1":
        assert body["callback"] == public and body["client-ref"] == event_id
    elif line == "pl1":
        assert (body["url"], body["method"]) == (public, "POST")
    elif line == "ka1":
        assert query["dlr-mask"] == "27"
        url = urlsplit(query["dlr-url"])
        assert dict(parse_qsl(url.query)) == {
            "token": "kannel-token", "type": "dlr", "id": event_id, "status": "%d"
        }  # fmt: skip
    elif line == "ja1":
        assert (body["dlr"], body["dlr-level"], body["dlr-method"]) == ("yes", "3", "POST")
        assert body["dlr-url"] == f"{public}?token=jasmin-token"
    elif line == "ge1":
        assert body["id"] == event_id


async def test_twilio_partially_delivered_is_not_final(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Twilio's API definition lists partially_delivered among a Message's statuses (twilio-oai
    message_enum_status; twilio/twilio-node#607): the message left Twilio but is not known to
    have reached the phone whole. It counts as sent, not unknown, and is not final: a later
    delivered still moves the row."""
    client, response_id, _ = await invited_on("tw1", tmp_path, aiohttp_client, aiohttp_server)
    path, headers, data = sign("tw1", payload("receipts/twilio_partially_delivered.http"))
    assert (await client.post(path, data=data, headers=headers)).status == 200
    assert await receipts_metric(client, "tw1", "sent") == 1.0
    assert await receipts_metric(client, "tw1", "unknown") == 0.0
    assert [r["status"] for r in await sent_rows(client, response_id)] == ["sent"]
    path, headers, data = sign("tw1", payload("receipts/twilio_delivered.http"))
    assert (await client.post(path, data=data, headers=headers)).status == 200
    (row,) = await sent_rows(client, response_id)
    assert (row["status"], row["raw_status"]) == ("delivered", "delivered")


async def test_forged_twilio_receipt_is_refused_and_changes_nothing(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, response_id, before = await invited_on("tw1", tmp_path, aiohttp_client, aiohttp_server)
    request = payload("receipts/twilio_delivered.http")
    path, headers, data = sign("tw1", request, forge=True)
    resp = await client.post(path, data=data, headers=headers)
    assert resp.status == 403
    assert await sent_rows(client, response_id) == before
    assert before[0]["status"] == "sent"
    for status in ("delivered", "unknown"):
        assert await receipts_metric(client, "tw1", status) == 0.0


@pytest.mark.parametrize(
    ("line", "name", "code", "body"),
    [
        ("tw1", "receipts/twilio_delivered.http", 200, "<Response></Response>"),
        ("ja1", "receipts/jasmin_delivrd.http", 200, "ACK/Jasmin"),
        ("vo1", "receipts/vonage_dlr.http", 204, ""),
    ],
    ids=["twilio", "jasmin", "vonage"],
)
async def test_receipt_for_a_message_seda_never_sent_is_acknowledged(
    line: str, name: str, code: int, body: str, tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:  # fmt: skip
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, {line: lines()[line]})
    path, headers, data = sign(line, payload(name))
    resp = await client.request(payload(name).method, path, data=data, headers=headers)
    assert resp.status == code  # acknowledged: the provider must not retry it forever
    assert await resp.text() == body if not body else body in await resp.text()
    assert await receipts_metric(client, line, "unknown") == 1.0
    assert await receipts_metric(client, line, "delivered") == 0.0
    with sqlite3.connect(tmp_path / "seda.db") as db:  # nothing was created for it
        assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)


async def test_a_receipt_that_comes_before_its_message_is_recorded_is_applied_then(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Twilio may call back before its send API has answered: Seda has no row for the message
    yet. The receipt is acknowledged, held, and applied once the message is recorded."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"tw1": lines()["tw1"]})
    answers: list[int] = []

    async def call_back_first() -> None:
        path, headers, data = sign("tw1", payload("receipts/twilio_delivered.http"))
        answers.append((await client.post(path, data=data, headers=headers)).status)

    fake.before_answer = call_back_first
    invited = await invite(client, RESPONDENT, line="tw1")
    await fake.wait(1)
    for _ in range(200):
        rows = await client.app[GATEWAY].store.deliveries.for_response(invited["response_id"])
        if rows and rows[0]["status"] != "sent":
            break
        await asyncio.sleep(0.02)
    assert answers == [200]
    (row,) = rows
    assert (row["message_id"], row["status"]) == ("SM7a0c3f6e1b2d4c5e8f9a0b1c2d3e4f5a", "delivered")
    assert await receipts_metric(client, "tw1", "unknown") == 1.0  # when it came
    assert await receipts_metric(client, "tw1", "delivered") == 1.0  # once applied


async def test_a_late_sent_never_overwrites_delivered(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, response_id, _ = await invited_on("tw1", tmp_path, aiohttp_client, aiohttp_server)
    delivered = payload("receipts/twilio_delivered.http")
    late = delivered.with_form(MessageStatus="sent", SmsStatus="sent")
    failed = delivered.with_form(MessageStatus="failed", SmsStatus="failed", ErrorCode="30008")
    for request in (delivered, late, failed):  # callbacks can arrive out of order
        path, headers, data = sign("tw1", request)
        resp = await client.post(path, data=data, headers=headers)
        assert resp.status == 200
    (row,) = await sent_rows(client, response_id)
    assert (row["status"], row["raw_status"], row["error"]) == ("delivered", "delivered", None)
    counts = [await receipts_metric(client, "tw1", s) for s in ("delivered", "sent", "failed")]
    assert counts == [1.0, 1.0, 1.0]  # each receipt is counted as it came


async def test_jasmin_level_1_then_level_2(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, response_id, _ = await invited_on("ja1", tmp_path, aiohttp_client, aiohttp_server)
    seen = []
    for name in ("receipts/jasmin_level1.http", "receipts/jasmin_delivrd.http"):
        path, headers, data = sign("ja1", payload(name))
        resp = await client.post(path, data=data, headers=headers)
        assert (resp.status, await resp.text()) == (200, "ACK/Jasmin")
        (row,) = await sent_rows(client, response_id)
        seen.append((row["status"], row["raw_status"]))
    # ESME_ROK (accepted by the SMSC) is no news after Seda's own "sent"; DELIVRD is.
    assert seen == [("sent", None), ("delivered", "DELIVRD")]


async def test_kavenegar_status_polling_moves_a_row_to_delivered(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    line = {"provider": "kavenegar", "number": "10004346", "api_key": "kav-test-key",
            "poll_interval": 0.05, "status_interval": 0.05, "spool": str(tmp_path / "kav.spool")}  # fmt: skip
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"kav1": line})
    invited = await invite(client, RESPONDENT, line="kav1")
    (sent,) = await fake.wait(1)
    assert sent["body"]["localid"]  # idempotent sends, as before
    (row,) = await sent_rows(client, invited["response_id"])
    assert (row["message_id"], row["status"]) == ("8792343", "sent")
    fake.statuses["8792343"] = 5  # sent on to the operator: asked about, nothing new
    for _ in range(100):
        if len(fake.status_queries) >= 2:
            break
        await asyncio.sleep(0.02)
    assert "8792343" in fake.status_queries
    assert (await sent_rows(client, invited["response_id"]))[0]["status"] == "sent"
    fake.statuses["8792343"] = 10  # delivered
    for _ in range(200):
        (row,) = await sent_rows(client, invited["response_id"])
        if row["status"] != "sent":
            break
        await asyncio.sleep(0.02)
    assert (row["status"], row["raw_status"]) == ("delivered", "10")
    assert await receipts_metric(client, "kav1", "delivered") == 1.0
    assert await receipts_metric(client, "kav1", "sent") == 0.0  # unchanged polls not counted
    asked = len(fake.status_queries)
    await asyncio.sleep(0.3)  # a final status is not asked about again
    assert all("8792343" not in q for q in fake.status_queries[asked:])


@pytest.mark.parametrize(
    ("provider", "spec", "ids"),
    [
        ("smsir", {"api_key": "smsir-test-key", "number": "30004505"}, ["86522023"]),
        ("ghasedak", {"api_key": "ghasedak-test-key", "number": "210002100"}, ["1234567890"]),
        ("melipayamak", {"username": "u", "password": "p", "number": "50004000"},
         ["5923381907431863210"]),
    ],
    ids=["smsir", "ghasedak", "melipayamak"],
)  # fmt: skip
async def test_polled_providers_record_their_message_ids(
    provider: str, spec: dict[str, Any], ids: list[str], tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:  # fmt: skip
    """The sent row keeps the provider's id (the one SMS.ir's and Ghasedak's status polls name,
    test_polled_receipts.py; Melipayamak's RecId, which is not polled)."""
    line = {"provider": provider, "poll_interval": 60, **spec}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"ir1": line})
    invited = await invite(client, RESPONDENT, line="ir1")
    await fake.wait(1)
    rows = await sent_rows(client, invited["response_id"])
    assert [(r["message_id"], r["provider"], r["status"]) for r in rows] == [
        (i, provider, "sent") for i in ids
    ]


async def test_erasure_takes_the_sent_messages_and_a_late_receipt_finds_nothing(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _, _ = await invited_on("tw1", tmp_path, aiohttp_client, aiohttp_server)
    resp = await client.post("/api/v1/respondents/erase", json={"respondent": RESPONDENT})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["responses"] == 1
    with sqlite3.connect(tmp_path / "seda.db") as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)
    path, headers, data = sign("tw1", payload("receipts/twilio_delivered.http"))
    resp = await client.post(path, data=data, headers=headers)  # the provider reports later
    assert resp.status == 200, await resp.text()
    with sqlite3.connect(tmp_path / "seda.db") as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)
