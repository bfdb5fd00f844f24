"""One outbound HTTP connection pool, opened on first use (and again after it was closed)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

USER_AGENT = "seda-gateway"


class HttpPool:
    """An aiohttp ClientSession made when first needed: backends and channel senders are built
    before the event loop runs, and a closed pool reopens on the next request."""

    def __init__(self, **options: Any) -> None:
        self._options = {"headers": {"User-Agent": USER_AGENT}, **options}
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        """The open pool."""
        if self._session is None or self._session.closed:
            options = dict(self._options)
            if "connector" in options:  # a connector per session: a closed one cannot be reused
                options["connector"] = options["connector"]()
            self._session = aiohttp.ClientSession(**options)
        return self._session

    async def close(self) -> None:
        """Close the pool's connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header as seconds from `now` (a Unix time): delta seconds or an HTTP-date
    (RFC 9110 10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)
