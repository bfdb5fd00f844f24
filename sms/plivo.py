"""Plivo: X-Plivo-Signature-V3 signed message webhooks, Message API sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from sms.base import (
    Ignored,
    Line,
    Received,
    Refused,
    basic_auth,
    e164,
    form,
    post_checked,
    required,
    same,
    tel,
)

API = "https://api.plivo.com"
# Plivo signs messaging webhooks with the -MA- variant (same algorithm) on some accounts.
SIGNATURES = ("X-Plivo-Signature-V3", "X-Plivo-Signature-MA-V3")
NONCE = "X-Plivo-Signature-V3-Nonce"


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """What V3 signs, from plivo/plivo-python plivo/utils/signature_v3.py."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    pairs = sorted(params)
    if method == "GET":
        merged = "&".join(f"{k}={v}" for k, v in sorted(query + pairs))
        return f"{base}?{merged}" if merged else base
    signed = "&".join(f"{k}={v}" for k, v in query)
    body = "".join(k + v for k, v in pairs)
    if not pairs:
        return f"{base}?{signed}" if signed else base
    return f"{base}?{signed}.{body}" if signed else f"{base}?{body}"


def signature(base: str, nonce: str, token: str) -> str:
    """base64 HMAC-SHA256(auth token, base + "." + nonce)."""
    mac = hmac.new(token.encode("utf-8"), f"{base}.{nonce}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def valid(
    method: str, url: str, params: list[tuple[str, str]], nonce: str, given: str, token: str
) -> bool:
    """Whether any of the comma-separated signatures matches."""
    base = base_string(method, url, params)
    expected = {signature(base, nonce, token)}
    # plivo-python re-decodes the UTF-8 base string as Latin-1 before signing it again as UTF-8;
    # accept that form too, so non-ASCII texts verify whichever way Plivo computed them.
    expected.add(signature(base.encode("utf-8").decode("latin-1"), nonce, token))
    return any(same(g.strip(), e) for g in given.split(",") for e in expected)


class Plivo:
    """One Plivo number (its Application's message_url points at /sms/{line})."""

    name = "plivo"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.auth_id = line.setting("auth_id")
        self.token = line.setting("auth_token")
        self.base = line.setting("base_url", API).rstrip("/")

    async def parse(self, request: web.Request, url: str) -> Received | Ignored:
        """Verify V3, drop status callbacks, read From, Text and MessageUUID."""
        params = await form(request)
        if self.line.verify:
            given = next((request.headers[h] for h in SIGNATURES if h in request.headers), "")
            nonce = request.headers.get(NONCE, "")
            signed = list(params.items()) if request.method == "POST" else []
            if (
                not given
                or not nonce
                or not valid(request.method, url, signed, nonce, given, self.token)
            ):
                raise Refused(403, "missing or wrong X-Plivo-Signature-V3")
        if "Text" not in params and "Status" in params:
            return Ignored(f"status callback ({params['Status']})")
        if params.get("Type", "sms") != "sms":
            return Ignored(f"{params.get('Type')} message")
        sender, uuid = required(params, "From", "MessageUUID")
        return Received(tel(sender, self.line.country), params.get("Text", ""), uuid)

    def answer(self, text: str | None) -> web.Response:
        """An empty Plivo XML response (replies go through the Message API)."""
        return web.Response(text="<Response></Response>", content_type="application/xml")

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> None:
        """POST /v1/Account/{auth_id}/Message/ with Basic auth."""
        url = f"{self.base}/v1/Account/{self.auth_id}/Message/"
        body = {"src": self.line.number.lstrip("+"), "dst": e164(to).lstrip("+"), "text": text}
        await post_checked(
            http, self.name, url, json=body, headers=basic_auth(self.auth_id, self.token)
        )
