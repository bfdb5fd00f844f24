"""Jasmin SMS gateway: MO pushed by an HTTP client connector, MT through the HTTP API /send.

Jasmin cannot sign, so the connector URL carries a shared `token`. Jasmin retries unless the
answer is 200 with the body exactly `ACK/Jasmin`, so every accepted or ignored request gets it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from sms.base import (
    Line,
    Params,
    Receipt,
    Received,
    Refused,
    check_token,
    digits_only,
    error_code,
    form,
    post_checked,
    receipt_url,
    required,
    tel,
)
from sms.segments import encoding

API = "http://127.0.0.1:1401"
ACK = "ACK/Jasmin"
SENT = re.compile(r'Success "([^"]+)"')
# message_status of a level 2 DLR (the SMPP receipt's stat); a level 1 DLR carries the
# submit_sm_resp status instead: ESME_ROK (accepted by the SMSC) or an ESME_R* error.
STATUSES = {"DELIVRD": "delivered", "UNDELIV": "undelivered", "EXPIRED": "undelivered",
            "DELETED": "failed", "REJECTD": "failed", "ACCEPTD": "sent", "ENROUTE": "sent",
            "ESME_ROK": "sent"}  # fmt: skip


class Jasmin:
    """One Jasmin HTTP client connector pointed at /sms/{line}?token=..."""

    name = "jasmin"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.base = line.setting("base_url", API).rstrip("/")
        if line.verify:
            line.setting("token")
        line.used_to_send("username", "password")

    async def parse(self, request: web.Request, url: str) -> Received | Receipt:
        """Check the token; read a DLR, or id, from and content (coding 8: UTF-16BE bytes)."""
        check_token(request, self.line)
        params = await form(request)
        if "message_status" in params:
            (message_id,) = required(params, "id")
            raw = params["message_status"]
            failed = raw.startswith("ESME_") and raw != "ESME_ROK"  # refused by the SMSC
            status = "failed" if failed else STATUSES.get(raw, "unknown")
            return Receipt(message_id, status, raw, error_code(params.get("err")))
        message_id, sender = required(params, "id", "from")
        text = params.get("content", "")
        if params.get("coding") == "8":
            text = await _ucs2(request, params)
        return Received(tel(sender, self.line.country), text, message_id)

    def answer(self, text: str | None) -> web.Response:
        """Exactly ACK/Jasmin (replies go through /send)."""
        return web.Response(text=ACK, content_type="text/plain")

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST /send (UCS-2 as coding 8 with hex-content); returns Jasmin's message id.

        With a public_url the line asks for DLRs of both levels there (dlr-level 3, POST)."""
        # Jasmin's /send has no idempotency key: a retry after a lost answer may resend.
        data = {
            "username": self.line.setting("username"),
            "password": self.line.setting("password"),
            "from": self.line.number,
            "to": digits_only(to),
        }
        if encoding(text) == "ucs2":
            data["coding"] = "8"
            data["hex-content"] = text.encode("utf-16-be").hex()
        else:
            data["content"] = text
        query = {"token": self.line.setting("token")} if self.line.verify else {}
        callback = receipt_url(self.line, **query)
        if callback:
            data.update({"dlr": "yes", "dlr-url": callback, "dlr-level": "3",
                         "dlr-method": "POST"})  # fmt: skip
        _, body = await post_checked(http, self.name, f"{self.base}/send", data=data)
        found = SENT.search(body)  # accepted (2xx): no id is no reason to send again
        return [found.group(1)] if found else []


async def _ucs2(request: web.Request, params: Params) -> str:
    """The text of a coding 8 (UCS-2) message: from the hex `binary`, or else from `content`.

    deliverSmHttpThrower (jookies/jasmin jasmin/routing/throwers.py) puts the SMS's own bytes,
    URL-encoded, in `content`, and their hex in `binary` (only in versions that have it: the
    older throwers.py and docs ja-http "Receiving SMS-MO" list no `binary`). For coding 8 those
    bytes are UTF-16BE: "تست" comes as content=%06%2A%063%06%2A (jookies/jasmin issue #320).
    Read as a UTF-8 form they are lost, so `content` is read again from the raw request."""
    if params.get("binary"):
        try:
            return bytes.fromhex(params["binary"]).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "binary is not UCS-2 hex") from None
    if request.method != "GET" and request.content_type != "application/x-www-form-urlencoded":
        raise Refused(400, "coding 8 without binary: send the form urlencoded")
    raw = request.rel_url.raw_query_string if request.method == "GET" else await request.read()
    query = raw if isinstance(raw, str) else raw.decode("latin-1")
    # latin-1 maps each byte to one code point, so the percent-decoded bytes come back whole
    pairs = parse_qsl(query, keep_blank_values=True, encoding="latin-1")
    content = next((value for name, value in pairs if name == "content"), "")
    try:
        return content.encode("latin-1").decode("utf-16-be")
    except UnicodeDecodeError:
        raise Refused(400, "content is not UCS-2 (coding 8)") from None
