"""The webhook backend: POST each event, signed the Standard Webhooks way.

Spec: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway import jsoncodec
from gateway.backends import DeliveryError
from gateway.http import HttpPool
from gateway.ids import Clock

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
RETRYABLE_STATUS = frozenset({408, 425, 429})
_OURS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"})


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(
            f"webhook secret decodes to {len(key)} bytes; Standard Webhooks uses 24-64"
        )
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` value: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment (safe to log)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class WebhookBackend:
    """POSTs each event as JSON with webhook-id, webhook-timestamp and webhook-signature."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        clock: Clock,
        secret: str | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._clock = clock
        self._key = secret_key(secret) if secret else None
        self._timeout = timeout
        extra = dict(headers or {})
        self._headers = {k: v for k, v in extra.items() if k.lower() not in _OURS}
        self._pool = HttpPool(timeout=aiohttp.ClientTimeout(total=timeout))

    def __repr__(self) -> str:
        return f"WebhookBackend({self.name!r}, {redact_url(self._url)!r})"

    async def deliver(self, event: dict[str, Any]) -> None:
        """POST one event; raise DeliveryError unless the receiver answers 2xx."""
        body = jsoncodec.dumpb(event)
        msg_id = str(event["id"])
        timestamp = int(self._clock().timestamp())
        headers = {
            **self._headers,
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, msg_id, timestamp, body)
        session = self._pool.get()
        try:
            async with session.post(
                self._url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"), timestamp)
                await response.content.read(64 * 1024)  # a little, so keep-alive can work
        except TimeoutError:
            raise DeliveryError(f"no answer within {self._timeout:g} s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(
                f"connection failed: {type(exc).__name__}", retryable=True
            ) from None
        if 200 <= status < 300:
            return
        # The forwarder logs the outcome; this adds where it went (no query string).
        log.debug(
            "webhook refused an event",
            extra={
                "fields": {"backend": self.name, "url": redact_url(self._url), "status": status}
            },
        )
        if status == 410:
            raise DeliveryError("HTTP 410 Gone: receiver removed", retryable=False, disable=True)
        retryable = status >= 500 or status in RETRYABLE_STATUS
        raise DeliveryError(f"HTTP {status}", retryable=retryable, retry_after=retry_after)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._pool.close()


def _retry_after(value: str | None, now: int) -> float | None:
    """Retry-After as seconds from now: delta seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def build(name: str, spec: Mapping[str, Any], *, clock: Clock) -> WebhookBackend:
    """A webhook backend from its config entry (`url`, `secret`, `timeout`, `headers`)."""
    url = spec.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"backend {name!r}: type webhook needs an http(s) `url`")
    timeout = float(spec.get("timeout", 10.0))
    if timeout <= 0:
        raise ValueError(f"backend {name!r}: `timeout` must be positive")
    try:
        return WebhookBackend(
            name,
            url,
            clock=clock,
            secret=spec.get("secret") or None,
            timeout=timeout,
            headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
        )
    except ValueError as exc:
        raise ValueError(f"backend {name!r}: {exc}") from None
