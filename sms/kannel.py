"""Kannel (self-hosted SMSC gateway): sms-service get-url/post-url in, sendsms out.

Kannel cannot sign, so its webhook URL carries a shared `token`; the HTTP response body is
sent back to the respondent as the reply SMS (set `omit-empty = true` for empty answers).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from sms.base import (
    Line,
    Receipt,
    Received,
    Refused,
    check_token,
    digits_only,
    post_checked,
    receipt_url,
    tel,
)
from sms.segments import encoding

API = "http://127.0.0.1:13013"
# The DLR bitmask Seda asks for: 1 delivered, 2 not delivered to the phone, 8 submitted to the
# SMSC, 16 rejected by the SMSC (4 buffered and 32 intermediate are left out).
DLR_MASK = 1 + 2 + 8 + 16
STATUSES = {"1": "delivered", "2": "undelivered", "4": "queued", "8": "sent", "16": "failed",
            "32": "sent"}  # fmt: skip


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        raise Refused(400, "the text is not in the declared charset") from None


class Kannel:
    """One Kannel sms-service (GET get-url or POST post-url to /sms/{line}?token=...)."""

    name = "kannel"
    methods = ("GET", "POST")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.base = line.setting("base_url", API).rstrip("/")
        if line.verify:
            line.setting("token")
        line.used_to_send("username", "password", "smsc")

    async def parse(self, request: web.Request, url: str) -> Received | Receipt:
        """Check the token; read a DLR (Seda's id and %d), or %I (id), %p (from) and %b or the
        POST body (text)."""
        check_token(request, self.line)
        # Kannel URL-encodes the text in the message's own charset (%C): decode it ourselves.
        _, _, raw_query = request.raw_path.partition("?")
        pairs = parse_qsl(raw_query, keep_blank_values=True, encoding="latin-1")
        query = {k: v.encode("latin-1") for k, v in pairs}
        if query.get("type") == b"dlr":
            # Seda's dlr-url carries its own id for the message and %d, the DLR value.
            seda_id = query.get("id", b"").decode("ascii", "replace")
            if not seda_id:
                raise Refused(400, "missing id in the DLR (the dlr-url Seda set carries it)")
            raw = query.get("status", b"").decode("ascii", "replace")
            return Receipt(seda_id, STATUSES.get(raw, "unknown"), raw)
        charset = query.get("charset", b"").decode("ascii", "replace")
        if request.method == "POST":
            sender = request.headers.get("X-Kannel-From", "") or query.get("from", b"").decode(
                "ascii", "replace"
            )  # not a number either way: tel() refuses it with a 400
            text = _decode(await request.read(), request.charset or charset)
        else:
            sender = query.get("from", b"").decode("ascii", "replace")
            text = _decode(query.get("text", b""), charset)
        message_id = query.get("id", b"").decode("ascii", "replace") or None
        if not sender:
            raise Refused(400, "missing from (%p in the get-url, or send-sender = true)")
        return Received(tel(sender, self.line.country), text, message_id)

    def answer(self, text: str | None) -> web.Response:
        """The reply SMS as the body (Kannel sends it to the respondent); empty for none.

        smsbox sends a text/plain body as GSM 7-bit unless X-Kannel-Coding says otherwise
        (it turns Persian into "???"): a reply that needs UCS-2 says 2, which smsbox obeys
        with `accept-x-kannel-headers = true` and converts the UTF-8 body to UCS-2."""
        headers = {"X-Kannel-Coding": "2"} if text and encoding(text) == "ucs2" else None
        return web.Response(
            text=text or "", content_type="text/plain", charset="utf-8", headers=headers
        )

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """GET /cgi-bin/sendsms (UTF-8 text; coding 2 = UCS-2 when the text needs it).

        sendsms answers no id, so Seda names the message itself (`key`, the outbox event id)
        and, with a public_url, asks for DLRs at a dlr-url that carries it; returns [key]."""
        params = {
            "username": self.line.setting("username"),
            "password": self.line.setting("password"),
            "from": self.line.number,
            "to": digits_only(to),
            "text": text,
            "charset": "UTF-8",
            "coding": "2" if encoding(text) == "ucs2" else "0",
        }
        if self.line.spec.get("smsc"):
            params["smsc"] = str(self.line.spec["smsc"])
        query = {"token": self.line.setting("token")} if self.line.verify else {}
        callback = receipt_url(self.line, **query, type="dlr", id=key)
        if callback:
            params["dlr-mask"] = str(DLR_MASK)
            params["dlr-url"] = callback + "&status=%d"  # Kannel puts the DLR value in %d
        await post_checked(
            http, self.name, f"{self.base}/cgi-bin/sendsms", method="GET", params=params
        )
        return [key]
