"""Malformed webhooks, one row per case, sent as raw bytes through the real app: each gets a
4xx (never a 500) and stores nothing. Found by fuzzing every route (odd header bytes, lone
surrogates, deep JSON, unreadable forms, digits that are not ASCII, booleans for ids)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from sms import generic, vonage
from tests.sms.helpers import start, twilio_line
from tests.sms.test_providers import GENERIC_SECRET, VONAGE_SECRET, lines

Request = tuple[str, str, dict[str, str | bytes], bytes]  # method, path, headers, body
FORM = "application/x-www-form-urlencoded"


def twilio(
    headers: dict[str, str | bytes], body: bytes = b"From=%2B989121234567&Body=9"
) -> Request:
    return "POST", "/sms/main", {"Content-Type": FORM, **headers}, body


def signed_generic(data: object, stamp: str | None = None, raw: bytes | None = None) -> Request:
    body = raw if raw is not None else json.dumps(data).encode()
    stamp = stamp or str(int(time.time()))
    sign = generic.signature(GENERIC_SECRET, stamp, body) if stamp.isascii() else "sha256=00"
    headers: dict[str, str | bytes] = {"Content-Type": "application/json",
                                       "X-Seda-Timestamp": stamp, "X-Seda-Signature": sign}  # fmt: skip
    return "POST", "/sms/gen1", headers, body


def signed_vonage(**params: str) -> Request:
    params = {"msisdn": "989121234567", "to": "982191001234", "messageId": "v1", "text": "9",
              "type": "text", "timestamp": str(int(time.time())), **params}  # fmt: skip
    params["sig"] = vonage.signature(params, VONAGE_SECRET, "sha256")
    return "POST", "/sms/vonage1", {"Content-Type": FORM}, urlencode(params).encode()


NESTED = b'{"a":' * 3000 + b"1" + b"}" * 3000
CASES: list[tuple[str, Callable[[], Request], int]] = [
    ("twilio signature not UTF-8", lambda: twilio({"X-Twilio-Signature": b"\xff\xfe"}), 403),
    ("plivo nonce not UTF-8", lambda: ("POST", "/sms/plivo1", {"Content-Type": FORM,
        "X-Plivo-Signature-V3": "x", "X-Plivo-Signature-V3-Nonce": b"\xff"}, b"From=1&To=2&Text=9&MessageUUID=u"), 403),
    ("generic signature not UTF-8", lambda: ("POST", "/sms/gen1", {"Content-Type": "application/json",
        "X-Seda-Timestamp": "1", "X-Seda-Signature": b"sha256=\xff"}, b"{}"), 403),
    ("generic timestamp in Arabic digits", lambda: signed_generic({}, stamp="٣"), 403),
    ("vonage JSON with a lone surrogate", lambda: ("POST", "/sms/vonage1", {"Content-Type": "application/json"},
        b'{"msisdn":"989121111112","messageId":"vj1","text":"\\ud800","timestamp":"1","sig":"00"}'), 403),
    ("vonage JSON nested 3,000 deep", lambda: ("POST", "/sms/vonage1", {"Content-Type": "application/json"}, NESTED), 400),
    ("generic JSON nested 3,000 deep", lambda: signed_generic(None, raw=NESTED), 400),
    ("form without a boundary", lambda: twilio({"Content-Type": "multipart/form-data"}, b"xx"), 400),
    ("form with a broken part", lambda: twilio({"Content-Type": "multipart/form-data; boundary=zz"}, b"--zz\r\ngarbage\r\n"), 400),
    ("form in a charset that does not exist", lambda: twilio({"Content-Type": FORM + "; charset=bogus"}), 400),
    ("vonage parts counted in superscripts", lambda: signed_vonage(**{"concat": "true", "concat-ref": "1",
        "concat-total": "²", "concat-part": "1"}), 400),
    ("kannel sender not UTF-8", lambda: ("POST", "/sms/kannel1?token=kannel-token&id=k5&from=%FF",
        {"Content-Type": "text/plain"}, b"x"), 400),
    ("generic type that is a list", lambda: signed_generic({"type": [1], "from": "+989121234567", "text": "9"}), 400),
    ("generic id that is a boolean", lambda: signed_generic({"id": True, "from": "+989121234567", "text": "9"}), 400),
]  # fmt: skip


async def send(client: Any, request: Request) -> int:
    """The request as raw bytes (aiohttp's client would refuse to send most of these)."""
    method, path, headers, body = request
    head = f"{method} {path} HTTP/1.1\r\nHost: seda\r\nConnection: close\r\n".encode()
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        head += (
            name.encode()
            + b": "
            + (value if isinstance(value, bytes) else value.encode())
            + b"\r\n"
        )
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"\r\n" + body)
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


@pytest.mark.parametrize(("label", "build", "status"), CASES, ids=[c[0] for c in CASES])
async def test_a_malformed_webhook_is_refused_and_changes_nothing(
    label: str, build: Callable[[], Request], status: int, tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    client, _ = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line(), **lines()}
    )
    assert await send(client, build()) == status
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    with sqlite3.connect(tmp_path / "seda.db") as db:
        for table in ("sessions", "answers", "inbound_ids", "outbox"):
            assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,), table


async def test_a_lone_surrogate_in_a_signed_reply_is_stored_as_a_replacement_character(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Python's JSON parser takes "\\ud800"; UTF-8 cannot hold it, so the commit refused the
    whole reply (a 500 the provider retried forever). It is now kept, as U+FFFD."""
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    invited = await client.post("/api/v1/invitations", json={"survey": "issue_resolved",
        "respondent": "tel:+989121234567", "language": "en", "channel": "sms", "line": "gen1"})  # fmt: skip
    assert invited.status == 201, await invited.text()
    body = b'{"from": "+989121234567", "text": "\\ud800 no", "id": "g\\ud800"}'
    assert await send(client, signed_generic(None, raw=body)) == 200
    with sqlite3.connect(tmp_path / "seda.db") as db:
        (data,) = db.execute("SELECT data FROM answers").fetchone()
        (key,) = db.execute("SELECT message_id FROM inbound_ids").fetchone()
    assert json.loads(data)["raw"] == "\ufffd no" and json.loads(data)["value"] is False
    assert key.endswith("g\ufffd")
