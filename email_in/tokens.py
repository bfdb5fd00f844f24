"""Reply tokens: a response id plus an HMAC tag, as lower-case base32 in a plus-address.

`survey+TOKEN@reply-domain` carries replies, `unsubscribe+TOKEN@...` opt-outs and
`bounce+TOKEN@...` (the envelope sender of what Seda sends, VERP) delivery reports.
Local parts can be case-folded on the way, so the token is lower-case base32 without padding;
a local part is at most 64 octets (RFC 5321 section 4.5.3.1.1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from typing import Literal

TAG_BYTES = 10  # 80 bits of HMAC-SHA256: forging one by guessing is hopeless
TOKEN_LENGTH = 42  # base32 of 16 + 10 bytes, no padding
MAX_LOCAL_PART = 64
MAIL_SCOPE = "mail"
ISSUED_CACHE = 4096  # tokens remembered: one email asks for the same ones three or four times

Purpose = Literal["survey", "unsubscribe", "bounce"]
PURPOSES: tuple[Purpose, ...] = ("survey", "unsubscribe", "bounce")
_TOKEN = re.compile(rf"[a-z2-7]{{{TOKEN_LENGTH}}}")


@dataclass(frozen=True)
class Recipient:
    """A parsed recipient of the reply domain: what it is for and which response it names."""

    purpose: Purpose
    response_id: str
    token: str


class Tokens:
    """Issues and checks tokens with one secret key (`channels.email.token_secret`)."""

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret
        self._issued: dict[tuple[str, str], str] = {}

    def issue(self, response_id: str, scope: str = MAIL_SCOPE) -> str:
        """The token for a response (a link token's scope names its question)."""
        key = (response_id, scope)
        token = self._issued.get(key)
        if token is None:
            rid = uuid.UUID(response_id).bytes
            raw = base64.b32encode(rid + self._tag(rid, scope)).decode("ascii")
            token = raw.rstrip("=").lower()
            if len(self._issued) >= ISSUED_CACHE:
                self._issued.clear()  # bounded; a miss only costs the HMAC again
            self._issued[key] = token
        return token

    def verify(self, token: str, scope: str = MAIL_SCOPE) -> str | None:
        """The response id a genuine token names, else None."""
        opened = self.open(token)
        if opened is None:
            return None
        rid, tag = opened
        if not hmac.compare_digest(tag, self._tag(rid, scope)):
            return None
        return str(uuid.UUID(bytes=rid))

    def open(self, token: str) -> tuple[bytes, bytes] | None:
        """The response id bytes and tag of a well-formed token, not yet checked."""
        if not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.b32decode(token.upper() + "======")
        except binascii.Error:
            return None
        if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != token:
            return None  # the last letter's spare bits set: one token, one spelling
        return raw[:16], raw[16:]

    def check(self, rid: bytes, tag: bytes, scope: str) -> bool:
        """Whether `tag` is the genuine tag of this response id in this scope."""
        return hmac.compare_digest(tag, self._tag(rid, scope))

    def address(self, purpose: Purpose, response_id: str, domain: str) -> str:
        """`purpose+TOKEN@domain` for a response."""
        return f"{purpose}+{self.issue(response_id)}@{domain}"

    def recipient(self, address: str, domain: str) -> Recipient | None:
        """The recipient an RCPT address names, or None (another domain, no or a forged token)."""
        local, at, host = address.rpartition("@")
        if not at or host.lower().rstrip(".") != domain.lower():
            return None
        if len(local.encode("utf-8")) > MAX_LOCAL_PART:
            return None
        prefix, plus, token = local.lower().partition("+")
        purpose = next((p for p in PURPOSES if p == prefix), None)
        if not plus or purpose is None:
            return None
        response_id = self.verify(token)
        if response_id is None:
            return None
        return Recipient(purpose, response_id, token)

    def _tag(self, rid: bytes, scope: str) -> bytes:
        message = scope.encode("utf-8") + b"\0" + rid
        return hmac.digest(self._secret, message, hashlib.sha256)[:TAG_BYTES]
