"""Twilio Programmable Messaging: signed form webhooks, TwiML replies, Messages.json sends."""

from __future__ import annotations

import base64
import functools
import hmac
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from sms.base import (
    Line,
    Params,
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
    tel,
)

API = "https://api.twilio.com"
TWIML = "application/xml"
# MessageStatus values (Twilio's Message resource) -> Seda's normalised statuses. The API
# definition (twilio-oai message_enum_status) also has partially_delivered, a real status that
# Twilio's docs long left out (twilio/twilio-node#607, a maintainer: "recently added"): the
# message left Twilio but is not known to have reached the phone whole, so it counts as sent
# (raw status kept) and a later delivered, undelivered or failed still moves it. receiving and
# received are an inbound message's statuses: no receipt of a sent message carries them.
STATUSES = {"accepted": "queued", "scheduled": "queued", "queued": "queued",
            "sending": "queued", "sent": "sent", "partially_delivered": "sent",
            "delivered": "delivered", "read": "delivered", "undelivered": "undelivered",
            "failed": "failed", "canceled": "failed"}  # fmt: skip
# A SID is two letters and 32 hex digits (twilio.com/docs/glossary/what-is-a-sid). Held to that
# shape because the signature runs names and values together: a captured request still
# verifies with the next field folded into MessageSid, which would be an id never seen.
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
# Error codes of a refused send that are about the line, not the respondent (twilio.com/docs/
# api/errors): 20003 the credentials or a suspended account (HTTP 401), 21606 the line's number
# cannot send SMS. Other 4xx codes are about the message (21211 invalid To, 21610 opted out,
# 21614 not a mobile): the dead letter. 20429 comes as HTTP 429: retried. 21606 is about the
# line's own From number: it holds that line only, not every line of the account.
ACCOUNT_CODES = frozenset({20003, 21606})
LINE_CODES = frozenset({21606})


def signature(url: str, params: Iterable[tuple[str, str]], token: str) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL and the sorted name+value pairs."""
    return _sign(token.encode("utf-8"), url, _joined(params))


def _joined(params: Iterable[tuple[str, str]]) -> str:
    # twilio/twilio-python request_validator.py: names sorted, each name's values sorted.
    return "".join([name + value for name, value in sorted(params)])


def _sign(key: bytes, url: str, joined: str) -> str:
    digest = hmac.digest(key, (url + joined).encode("utf-8"), "sha1")
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> list[str]:
    """The URL as called, without and with the default port (Twilio signs either way)."""
    return [variant.decode("utf-8") for variant in _variants(url)]


@functools.lru_cache(maxsize=64)  # a line is called at one URL: split it once, not per webhook
def _variants(url: str) -> tuple[bytes, ...]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    bare = urlunsplit(parts._replace(netloc=host))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    return tuple(u.encode("utf-8") for u in dict.fromkeys([url, bare, ported]))


def valid(url: str, params: Params, given: str, token: str) -> bool:
    """Whether `given` signs this request under any URL form Twilio uses."""
    return _valid(token.encode("utf-8"), url, params, given)


def _valid(key: bytes, url: str, params: Params, given: str) -> bool:
    joined = _joined(params.items()).encode("utf-8")  # the same for every URL form: built once
    signed = given.encode("utf-8", "surrogatepass")  # odd header bytes: no match, no error
    for variant in _variants(url):
        expected = base64.b64encode(hmac.digest(key, variant + joined, "sha1"))
        if hmac.compare_digest(signed, expected):  # constant time, as sms.base.same
            return True
    return False


class Twilio:
    """One Twilio number."""

    name = "twilio"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.account = line.setting("account_sid")
        self.token = line.setting("auth_token")
        self._key = self.token.encode("utf-8")
        self.base = line.setting("base_url", API).rstrip("/")

    async def parse(self, request: web.Request, url: str) -> Received | Receipt:
        """Verify X-Twilio-Signature, then read a status callback or MessageSid, From, Body."""
        params = await form(request)
        if self.line.verify:
            given = request.headers.get("X-Twilio-Signature", "")
            signed = params if request.method == "POST" else Params()
            if not given or not _valid(self._key, url, signed, given):
                raise Refused(403, "missing or wrong X-Twilio-Signature")
        if params.get("AccountSid") != self.account:
            raise Refused(403, "the request is for another Twilio account")
        if "MessageStatus" in params:
            (sid,) = required(params, "MessageSid")
            _check_sid(sid)
            raw = params["MessageStatus"]
            error = error_code(params.get("ErrorCode"))
            return Receipt(sid, STATUSES.get(raw, "unknown"), raw, error)
        sid, sender = required(params, "MessageSid", "From")
        _check_sid(sid)
        return Received(tel(sender, self.line.country), params.get("Body", ""), sid)

    def answer(self, text: str | None) -> web.Response:
        """TwiML: one <Message> with the reply, or an empty <Response/> to send nothing."""
        inner = f"<Message>{escape(text)}</Message>" if text else ""
        body = f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'
        return web.Response(text=body, content_type=TWIML, charset="utf-8")

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST /2010-04-01/Accounts/{sid}/Messages.json with Basic auth; returns the sid.

        With a public_url the line asks for status callbacks there (StatusCallback)."""
        # Twilio's Messages API has no idempotency key: a retry after a lost answer may resend.
        url = f"{self.base}/2010-04-01/Accounts/{self.account}/Messages.json"
        data = {"To": e164(to), "From": self.line.number, "Body": text}
        callback = receipt_url(self.line)
        if callback:
            data["StatusCallback"] = callback
        auth = basic_auth(self.account, self.token)
        _, body = await post_checked(
            http,
            self.name,
            url,
            data=data,
            headers=auth,
            account=ACCOUNT_CODES,
            line_codes=LINE_CODES,
        )
        try:  # accepted (2xx): an answer without a sid is no reason to send again
            sid = json.loads(body).get("sid")
        except (ValueError, AttributeError):
            sid = None
        return [str(sid)] if sid else []


def _check_sid(sid: str) -> None:
    if not _SID.fullmatch(sid):
        raise Refused(400, "MessageSid is not a Twilio message SID")
