"""The webhook backend: POST each event, signed the Standard Webhooks way.

Spec: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from gateway import jsoncodec
from gateway.backends import DeliveryError
from gateway.http import HttpPool, retry_after
from gateway.ids import Clock

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# 401, 403 and 404 are the receiver's set-up, not the event: a secret rotated on one side only, a
# route not deployed yet. Fixed there, the waiting events go on by themselves (as Stripe and Svix
# retry any failure); the first failure of a streak is a warning, so it is seen.
RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 425, 429})
_OURS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"})


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix and the padding are optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    encoded += "=" * (-len(encoded) % 4)  # as the reference verifier, which pads it
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


def signatures(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per key, space-separated: during a secret rotation the receiver verifies
    with whichever key it holds."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


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
        secret: str | Sequence[str] | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._clock = clock
        secrets = [secret] if isinstance(secret, str) else list(secret or ())
        self._keys = [secret_key(s) for s in secrets if s]  # the current one first
        if not self._keys:  # also when every entry is an unset ${VAR:-}
            log.warning(
                "webhook backend has no secret: deliveries are unsigned",
                extra={"fields": {"backend": name}},
            )
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
        if self._keys:
            headers["webhook-signature"] = signatures(self._keys, msg_id, timestamp, body)
        session = self._pool.get()
        try:
            # A redirect is not followed: the signed POST would go to a place nobody configured
            # (and 301-303 turn it into a GET); the error names it, so the url can be updated.
            async with session.post(
                self._url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                wait = retry_after(response.headers.get("Retry-After"), timestamp)
                location = response.headers.get("Location")
                # A little of the body, so keep-alive can work. The status is the answer: a body
                # cut short after a 2xx does not make the delivery fail.
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await response.content.read(64 * 1024)
        except TimeoutError:
            raise DeliveryError(f"no answer within {self._timeout:g} s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(connection_problem(exc), retryable=True) from None
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
        if 300 <= status < 400:
            where = redact_url(urljoin(self._url, location)) if location else "nowhere"
            raise DeliveryError(
                f"HTTP {status} redirect to {where}, not followed: update the backend's url",
                retryable=False,
            )
        retryable = status >= 500 or status in RETRYABLE_STATUS
        raise DeliveryError(f"HTTP {status}", retryable=retryable, retry_after=wait)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._pool.close()


def connection_problem(exc: aiohttp.ClientError) -> str:
    """What went wrong with the connection, in words an operator can act on (no URL path)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        why = getattr(cert, "verify_message", None) or str(cert)
        return f"TLS certificate of {exc.host} not accepted: {why}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if isinstance(error, ssl.SSLError):
            why = f"TLS handshake failed ({error.reason or type(error).__name__})"
        elif isinstance(error, socket.gaierror):
            why = f"name not resolved ({error.strerror})"
        elif error.errno is not None and error.errno > 0:
            why = os.strerror(error.errno)
        else:
            why = error.strerror or type(error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {why}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection before answering"
    return f"connection failed: {type(exc).__name__}"


def build(name: str, spec: Mapping[str, Any], *, clock: Clock) -> WebhookBackend:
    """A webhook backend from its config entry (`url`, `secret` (one, or a list while it is
    rotated), `timeout`, `headers`)."""
    url = spec.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"backend {name!r}: type webhook needs an http(s) `url`")
    timeout = float(spec.get("timeout", 10.0))
    if timeout <= 0:
        raise ValueError(f"backend {name!r}: `timeout` must be positive")
    secret = spec.get("secret") or None
    if not (secret is None or isinstance(secret, str) or _strings(secret)):
        raise ValueError(f"backend {name!r}: `secret` must be a string or a list of strings")
    try:
        return WebhookBackend(
            name,
            url,
            clock=clock,
            secret=secret,
            timeout=timeout,
            headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
        )
    except ValueError as exc:
        raise ValueError(f"backend {name!r}: {exc}") from None


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
