"""Sending through the WhatsApp Cloud API (Graph API), with failures as typed delivery errors."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.backends import DeliveryError
from gateway.http import HttpPool, retry_after

# Graph error codes worth a retry (Meta, WhatsApp Cloud API "Error codes",
# developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes):
# 1 and 2 temporary API errors, 4 and 80007 rate limits of the app and the account,
# 130429 throughput, 131000 "something went wrong", 131016 service unavailable, 131048 spam
# rate limit, 131056 pair rate limit (one business number to one user), 133004 server down.
RETRYABLE_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056, 133004})
TOKEN_CODES = frozenset({0, 190})  # the access token expired or was revoked
PAIR_RATE_LIMIT = 131056
PAIR_RATE_SECONDS = 6.0  # about one message every 6 s to one user


class GraphClient:
    """One HTTP session to the Graph API for every line."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._pool = HttpPool(timeout=aiohttp.ClientTimeout(total=timeout))

    async def send(
        self, base: str, phone_number_id: str, token: str, message: dict[str, Any]
    ) -> str | None:
        """POST /{phone_number_id}/messages: the wamid of the message sent (None if the answer
        has none); DeliveryError unless the Cloud API took it."""
        url = f"{base}/{phone_number_id}/messages"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._pool.get().post(url, json=message, headers=headers) as response:
                status = response.status
                wait = retry_after(response.headers.get("Retry-After"), time.time())
                body = await response.content.read(64 * 1024)
        except TimeoutError:
            raise DeliveryError("graph: no answer in time", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"graph: {type(exc).__name__}", retryable=True) from None
        if 200 <= status < 300:
            return _wamid(body)
        raise graph_error(status, _code(body), wait)

    async def media(self, base: str, media_id: str, token: str, limit: int) -> bytes | None:
        """A received media file (a voice note): GET /{media_id} for its URL, then the bytes
        with the same token; None when it is bigger than `limit`. MediaError on failure."""
        headers = {"Authorization": f"Bearer {token}"}
        described = await self._get(f"{base}/{media_id}", headers, 64 * 1024)
        try:
            info = json.loads(described)
            url, size = str(info["url"]), int(info.get("file_size") or 0)
        except (ValueError, KeyError, TypeError):
            raise MediaError("graph: the media description has no url", retryable=False) from None
        if urlsplit(url).scheme != "https" and urlsplit(url).netloc != urlsplit(base).netloc:
            raise MediaError("graph: the media URL is not https", retryable=False)
        if size > limit:
            return None
        data = await self._get(url, headers, limit + 1)
        if len(data) > limit:
            return None
        digest = info.get("sha256")
        if isinstance(digest, str) and digest and hashlib.sha256(data).hexdigest() != digest:
            raise MediaError("graph: the media file does not match its sha256", retryable=True)
        return data

    async def _get(self, url: str, headers: dict[str, str], limit: int) -> bytes:
        """The body of a GET (at most `limit` bytes read); MediaError unless 200."""
        try:
            async with self._pool.get().get(
                url, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) >= limit:
                        break
        except TimeoutError:
            raise MediaError("graph: no answer in time", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise MediaError(f"graph: {type(exc).__name__}", retryable=True) from None
        if status != 200:
            error = graph_error(status, _code(bytes(data)), None)
            raise MediaError(f"media download: {error}", retryable=error.retryable)
        return bytes(data)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._pool.close()


class MediaError(Exception):
    """A media file could not be fetched; `retryable`: whether asking again later can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def graph_error(status: int, code: int | None, retry_after: float | None) -> DeliveryError:
    """What a refused send means for the outbox (the error text may hold a phone number:
    only the status and code are kept)."""
    reason = f"graph HTTP {status}" + (f" code {code}" if code is not None else "")
    if code == PAIR_RATE_LIMIT and retry_after is None:
        retry_after = PAIR_RATE_SECONDS
    if status == 401 or code in TOKEN_CODES:
        return DeliveryError(f"{reason}: access token refused", retryable=True)
    retryable = status >= 500 or status == 429 or code in RETRYABLE_CODES
    # The pair rate limit is one user's: only messages to that number wait (the others, and
    # 130429, the business number's throughput, are the line's: the backend waits).
    recipient = code == PAIR_RATE_LIMIT
    return DeliveryError(reason, retryable=retryable, retry_after=retry_after, recipient=recipient)


def _code(body: bytes) -> int | None:
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError):
        return None
    code = error.get("code") if isinstance(error, dict) else None
    return int(code) if isinstance(code, int | str) and str(code).isdigit() else None


def _wamid(body: bytes) -> str | None:
    """The id of the sent message in a send's answer: {"messages": [{"id": "wamid..."}]}."""
    try:
        found = json.loads(body)["messages"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return found if isinstance(found, str) else None
