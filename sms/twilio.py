"""Twilio Programmable Messaging: signed form webhooks, TwiML replies, Messages.json sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from sms.base import (
    Ignored,
    Line,
    Params,
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

API = "https://api.twilio.com"
TWIML = "application/xml"


def signature(url: str, params: Iterable[tuple[str, str]], token: str) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL and the sorted name+value pairs."""
    # twilio/twilio-python request_validator.py: names sorted, each name's values sorted.
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> list[str]:
    """The URL as called, without and with the default port (Twilio signs either way)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    bare = urlunsplit(parts._replace(netloc=host))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    return list(dict.fromkeys([url, bare, ported]))


def valid(url: str, params: Params, given: str, token: str) -> bool:
    """Whether `given` signs this request under any URL form Twilio uses."""
    pairs = list(params.items())
    return any(same(given, signature(u, pairs, token)) for u in url_variants(url))


class Twilio:
    """One Twilio number."""

    name = "twilio"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.account = line.setting("account_sid")
        self.token = line.setting("auth_token")
        self.base = line.setting("base_url", API).rstrip("/")

    async def parse(self, request: web.Request, url: str) -> Received | Ignored:
        """Verify X-Twilio-Signature, then read MessageSid, From and Body."""
        params = await form(request)
        if self.line.verify:
            given = request.headers.get("X-Twilio-Signature", "")
            signed = params if request.method == "POST" else Params()
            if not given or not valid(url, signed, given, self.token):
                raise Refused(403, "missing or wrong X-Twilio-Signature")
        if params.get("AccountSid") != self.account:
            raise Refused(403, "the request is for another Twilio account")
        if "MessageStatus" in params:
            return Ignored(f"status callback ({params['MessageStatus']})")
        sid, sender = required(params, "MessageSid", "From")
        return Received(tel(sender, self.line.country), params.get("Body", ""), sid)

    def answer(self, text: str | None) -> web.Response:
        """TwiML: one <Message> with the reply, or an empty <Response/> to send nothing."""
        inner = f"<Message>{escape(text)}</Message>" if text else ""
        body = f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'
        return web.Response(text=body, content_type=TWIML, charset="utf-8")

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> None:
        """POST /2010-04-01/Accounts/{sid}/Messages.json with Basic auth."""
        # Twilio's Messages API has no idempotency key: a retry after a lost answer may resend.
        url = f"{self.base}/2010-04-01/Accounts/{self.account}/Messages.json"
        data = {"To": e164(to), "From": self.line.number, "Body": text}
        auth = basic_auth(self.account, self.token)
        await post_checked(http, self.name, url, data=data, headers=auth)
