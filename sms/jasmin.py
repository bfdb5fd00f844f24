"""Jasmin SMS gateway: MO pushed by an HTTP client connector, MT through the HTTP API /send.

Jasmin cannot sign, so the connector URL carries a shared `token`. Jasmin retries unless the
answer is 200 with the body exactly `ACK/Jasmin`, so every accepted or ignored request gets it.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from sms.base import (
    Ignored,
    Line,
    Received,
    Refused,
    check_token,
    digits_only,
    form,
    post_checked,
    required,
    tel,
)
from sms.segments import encoding

API = "http://127.0.0.1:1401"
ACK = "ACK/Jasmin"


class Jasmin:
    """One Jasmin HTTP client connector pointed at /sms/{line}?token=..."""

    name = "jasmin"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.base = line.setting("base_url", API).rstrip("/")
        if line.verify:
            line.setting("token")

    async def parse(self, request: web.Request, url: str) -> Received | Ignored:
        """Check the token, drop DLRs, read id, from and content (UCS-2 from the hex `binary`)."""
        check_token(request, self.line)
        params = await form(request)
        if "message_status" in params:
            return Ignored(f"delivery receipt ({params['message_status']})")
        message_id, sender = required(params, "id", "from")
        text = params.get("content", "")
        if params.get("coding") == "8" and params.get("binary"):
            try:
                text = bytes.fromhex(params["binary"]).decode("utf-16-be")
            except (ValueError, UnicodeDecodeError):
                raise Refused(400, "binary is not UCS-2 hex") from None
        return Received(tel(sender, self.line.country), text, message_id)

    def answer(self, text: str | None) -> web.Response:
        """Exactly ACK/Jasmin (replies go through /send)."""
        return web.Response(text=ACK, content_type="text/plain")

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> None:
        """POST /send (UCS-2 as coding 8 with hex-content)."""
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
        await post_checked(http, self.name, f"{self.base}/send", data=data)
