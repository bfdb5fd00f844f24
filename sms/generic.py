"""A generic JSON SMS gateway: HMAC-signed JSON webhooks in, JSON sends out."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from sms.base import (
    STATUSES,
    Ignored,
    Line,
    Receipt,
    Received,
    Refused,
    ascii_digits,
    e164,
    error_code,
    post_checked,
    same,
    tel,
)

SIGNATURE = "X-Seda-Signature"
TIMESTAMP = "X-Seda-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Generic:
    """Any gateway that can POST JSON {id, from, to, text} and accept the same shape to send."""

    name = "generic"
    methods = ("POST",)

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.now = now
        self.secret = line.setting("secret")
        self.send_url = line.spec.get("send_url")
        self.skew = float(line.spec.get("max_skew", 300))

    async def parse(self, request: web.Request, url: str) -> Received | Receipt | Ignored:
        """Verify the HMAC over timestamp and raw body, then read the JSON message."""
        body = await request.read()
        if self.line.verify:
            stamp = request.headers.get(TIMESTAMP, "")
            given = request.headers.get(SIGNATURE, "")
            if not ascii_digits(stamp) or not same(given, signature(self.secret, stamp, body)):
                raise Refused(403, f"missing or wrong {SIGNATURE}")
            if abs(self.now() - int(stamp)) > self.skew:
                raise Refused(403, f"{TIMESTAMP} is too old or in the future")
        try:
            data: Any = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise Refused(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the body must be a JSON object")
        kind = data.get("type", "message")
        if not isinstance(kind, str):
            raise Refused(400, "type must be a string: message or status")
        if kind == "status":  # {type: status, id: <Seda's id>, status, error?}
            message_id, raw = data.get("id"), data.get("status")
            if type(message_id) not in (str, int) or not isinstance(raw, str):  # true is no id
                raise Refused(400, "a status needs id and status")
            error = error_code(str(data["error"])) if data.get("error") is not None else None
            status = raw if raw in STATUSES else "unknown"
            return Receipt(str(message_id)[:128], status, raw[:32], error)
        if kind != "message":
            return Ignored(f"{kind[:32]} notification")
        sender, text, message_id = data.get("from"), data.get("text"), data.get("id")
        if not isinstance(sender, str) or not isinstance(text, str):
            raise Refused(400, "from and text are required strings")
        if message_id is not None and type(message_id) not in (str, int):
            raise Refused(400, "id must be a string")
        return Received(tel(sender, self.line.country), text, _id(message_id))

    def answer(self, text: str | None) -> web.Response:
        """JSON: the reply text (or null) for gateways that can answer synchronously."""
        return web.json_response({"status": "ok", "reply": text}, dumps=_dumps)

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST {send_url} {id, from, to, text}, signed like the webhooks; the gateway's
        status notifications name the message by that id (Seda's), which is returned."""
        if not self.send_url:
            raise ValueError(f"channels.sms.lines.{self.line.name}: send_url is required")
        body = _dumps({"id": key, "from": self.line.number, "to": e164(to), "text": text})
        raw = body.encode("utf-8")
        stamp = str(int(self.now()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP: stamp,
            SIGNATURE: signature(self.secret, stamp, raw),
            "Idempotency-Key": key,
        }
        await post_checked(http, self.name, str(self.send_url), data=raw, headers=headers)
        return [key]


def _id(value: str | int | None) -> str | None:
    return None if value is None else str(value)[:128]


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)
