"""Plivo: X-Plivo-Signature-V3 signed message webhooks, Message API sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from sms.base import (
    Ignored,
    Line,
    Receipt,
    Received,
    Refused,
    basic_auth,
    e164,
    error_code,
    form,
    post_checked,
    receipt_url,
    required,
    same,
    tel,
)

API = "https://api.plivo.com"
# Status callback `Status` values (Plivo's Message resource) -> Seda's normalised statuses.
STATUSES = {"queued": "queued", "sent": "sent", "delivered": "delivered", "read": "delivered",
            "undelivered": "undelivered", "failed": "failed", "rejected": "failed"}  # fmt: skip
# Plivo signs messaging webhooks with the -MA- variant (same algorithm) on some accounts.
SIGNATURES = ("X-Plivo-Signature-V3", "X-Plivo-Signature-MA-V3")
NONCE = "X-Plivo-Signature-V3-Nonce"
# V3 signs a POST's names and values run together: a captured request still verifies with the
# next field folded into MessageUUID, an id never seen. Plivo's ids are UUIDs: held to that.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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
    message = f"{base}.{nonce}".encode("utf-8", "surrogatepass")  # odd bytes: no match
    mac = hmac.new(token.encode("utf-8"), message, hashlib.sha256)
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

    async def parse(self, request: web.Request, url: str) -> Received | Receipt | Ignored:
        """Verify V3, then read a status callback, or From, Text and MessageUUID."""
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
            (uuid,) = required(params, "MessageUUID")
            _check_uuid(uuid)
            raw = params["Status"]
            error = error_code(params.get("ErrorCode"))
            return Receipt(uuid, STATUSES.get(raw, "unknown"), raw, error)
        if params.get("Type", "sms") != "sms":
            return Ignored(f"{params.get('Type')} message")
        sender, uuid = required(params, "From", "MessageUUID")
        _check_uuid(uuid)
        return Received(tel(sender, self.line.country), params.get("Text", ""), uuid)

    def answer(self, text: str | None) -> web.Response:
        """An empty Plivo XML response (replies go through the Message API)."""
        return web.Response(text="<Response></Response>", content_type="application/xml")

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST /v1/Account/{auth_id}/Message/ with Basic auth; returns the message_uuid list.

        With a public_url the line asks for status callbacks there (`url`, POST)."""
        # Plivo's Message API has no idempotency key: a retry after a lost answer may resend.
        url = f"{self.base}/v1/Account/{self.auth_id}/Message/"
        body = {"src": self.line.number.lstrip("+"), "dst": e164(to).lstrip("+"), "text": text}
        callback = receipt_url(self.line)
        if callback:
            body.update(url=callback, method="POST")
        _, answer = await post_checked(
            http, self.name, url, json=body, headers=basic_auth(self.auth_id, self.token)
        )
        try:  # accepted (2xx): an answer without ids is no reason to send again
            uuids = json.loads(answer).get("message_uuid") or []
        except (ValueError, AttributeError):
            uuids = []
        return [str(u) for u in uuids] if isinstance(uuids, list) else [str(uuids)]


def _check_uuid(uuid: str) -> None:
    if not _UUID.fullmatch(uuid):
        raise Refused(400, "MessageUUID is not a Plivo message UUID")
