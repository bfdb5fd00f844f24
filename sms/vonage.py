"""Vonage (Nexmo) SMS API: signed inbound webhooks, concatenated parts, sms/json sends.

Each part of a concatenated message comes in its own webhook and is read as a Part: the channel
holds it on disk before answering (sms/parts.py), since Vonage does not send an acknowledged
part again, and hands the message to the core when it is whole (or `concat_timeout` has passed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import web
from multidict import MultiDict

from gateway.backends import DeliveryError
from sms.base import (
    AccountRefused,
    Ignored,
    Line,
    Params,
    Part,
    Receipt,
    Received,
    Refused,
    ascii_digits,
    digits_only,
    error_code,
    form,
    post_checked,
    receipt_url,
    required,
    same,
    tel,
)
from sms.segments import encoding

API = "https://rest.nexmo.com"
# DLR `status` values (Vonage SMS API delivery receipts) -> Seda's normalised statuses.
STATUSES = {"accepted": "sent", "buffered": "sent", "delivered": "delivered",
            "expired": "undelivered", "failed": "failed", "rejected": "failed"}  # fmt: skip
# A send's messages[].status (developer.vonage.com/en/api-errors/sms and messaging/sms/guides/
# troubleshooting-sms, whose source is Nexmo/station _documentation/en/messaging/sms/guides/
# troubleshooting-sms.md), always in a 200 answer: 1 throttled, 5 internal error, 10 too many
# binds: retried. The account (retried, the line held): 4 invalid credentials, 8 account
# suspended, 9 not enough credit, 11 account not enabled for the SMS API, 14 invalid request
# signature, 15 a sender the account may not use, 23 the callback URL (the line's public_url)
# too long or with illegal characters, 29 "non-whitelisted destination" (the account is still
# in demo mode: top it up), 32 "signature and API secret disallowed" (the account signs its
# requests; Seda sends api_secret): every respondent's message would fail the same way until
# the operator acts. Any other code is about the message (3 invalid parameters such as the
# number, 6 unroutable number, 7 barred number, 12 too long, 33 number de-activated): the
# dead letter.
RETRY = frozenset({"1", "5", "10"})
ACCOUNT = frozenset({"4", "8", "9", "11", "14", "15", "23", "29", "32"})
LINE = frozenset({"15", "23"})  # of those, the line's own sender or callback: that line only
METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")


def signature(params: Mapping[str, str], secret: str, method: str = "md5hash") -> str:
    """Vonage's SMS signature: sorted &key=value ('&' and '=' in values as '_'), hex."""
    # Vonage/vonage-python-sdk (vonage 3.x client.py `signature`): MD5 hash appends the secret;
    # the HMAC methods key the hash with it. Lower-case hex; callers compare case-insensitively.
    data = "".join(
        f"&{k}={str(params[k]).replace('&', '_').replace('=', '_')}"
        for k in sorted(params)
        if k != "sig"
    ).encode("utf-8", "surrogatepass")  # a lone surrogate (JSON \ud800) then does not match
    if method == "md5hash":
        return hashlib.md5(data + secret.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), data, method).hexdigest()


class Vonage:
    """One Vonage number (inbound webhook GET, POST form or POST JSON)."""

    name = "vonage"
    methods = ("GET", "POST")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.now = now
        self.base = line.setting("base_url", API).rstrip("/")
        self.method = line.setting("signature_method", "md5hash").lower()
        if self.method not in METHODS:
            raise ValueError(f"channels.sms.lines.{line.name}: signature_method: {METHODS}")
        self.secret = line.setting("signature_secret") if line.verify else ""
        self.skew = float(line.spec.get("max_skew", 300))
        self.concat_timeout = float(line.spec.get("concat_timeout", 300))
        if not self.concat_timeout > 0:
            raise ValueError(f"channels.sms.lines.{line.name}: concat_timeout: seconds, above 0")
        line.used_to_send("api_key", "api_secret")

    async def parse(self, request: web.Request, url: str) -> Received | Part | Receipt | Ignored:
        """Verify `sig`; read a receipt, a part of a long message, or msisdn, text, messageId."""
        params = await _params(request)
        if self.line.verify:
            self._verify(params)
        if "text" not in params and ("status" in params or "err-code" in params):
            (message_id,) = required(params, "messageId")
            raw = params.get("status", "")
            error = error_code(params.get("err-code"))
            return Receipt(message_id, STATUSES.get(raw, "unknown"), raw, error)
        if params.get("type", "text") not in ("text", "unicode"):
            return Ignored("binary message")
        sender, message_id = required(params, "msisdn", "messageId")
        text = params.get("text", "")
        if params.get("concat") == "true":
            return self._part(params, sender, message_id, text)
        return Received(tel(sender, self.line.country), text, message_id)

    def _verify(self, params: Params) -> None:
        given = params.get("sig", "").lower()
        if not given or not same(given, signature(params, self.secret, self.method)):
            raise Refused(403, "missing or wrong sig")
        stamp = params.get("timestamp", "")
        if not ascii_digits(stamp) or abs(self.now() - int(stamp)) > self.skew:
            raise Refused(403, "the signed timestamp is too old or in the future")

    def _part(self, params: Params, sender: str, message_id: str, text: str) -> Part:
        ref, total, part = required(params, "concat-ref", "concat-total", "concat-part")
        if (
            not ascii_digits(total)
            or not ascii_digits(part)
            or not 1 <= int(part) <= int(total) <= 255
        ):
            raise Refused(400, "concat-part and concat-total must be 1..255")
        return Part(tel(sender, self.line.country), ref, int(total), int(part), text, message_id)

    def answer(self, text: str | None) -> web.Response:
        """204: Vonage only needs a 2xx, and an SMS reply goes through the API."""
        return web.Response(status=204)

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST /sms/json (type unicode for UCS-2 text; client-ref carries the event id);
        returns the message-id of every part. With a public_url, `callback` asks for the
        receipts there (else they go to the account's default delivery receipt URL)."""
        data = {
            "api_key": self.line.setting("api_key"),
            "api_secret": self.line.setting("api_secret"),
            "from": self.line.number.lstrip("+"),
            "to": digits_only(to),
            "text": text,
            "client-ref": key,
        }
        if encoding(text) == "ucs2":
            data["type"] = "unicode"
        callback = receipt_url(self.line)
        if callback:
            data["callback"] = callback
        _, body = await post_checked(http, self.name, f"{self.base}/sms/json", data=data)
        try:
            messages = json.loads(body)["messages"]
        except (ValueError, KeyError, TypeError):
            raise DeliveryError("vonage answered an unreadable body", retryable=True) from None
        ids: list[str] = []
        for message in messages:
            status = str(message.get("status"))
            if status in ACCOUNT:
                raise AccountRefused(
                    f"vonage refused the account: status {status}",
                    whole_account=status not in LINE,
                )
            if status != "0":
                retry = status in RETRY
                raise DeliveryError(f"vonage status {status}", retryable=retry)
            if message.get("message-id"):
                ids.append(str(message["message-id"]))
        return ids


async def _params(request: web.Request) -> Params:
    if request.method == "POST" and request.content_type == "application/json":
        try:
            data = json.loads(await request.read())
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise Refused(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the body must be a JSON object")
        return MultiDict((str(k), str(v)) for k, v in data.items() if v is not None)
    params = await form(request)
    if request.method == "POST":
        params.extend(request.query)  # Vonage may keep some fields in the query
    return params
