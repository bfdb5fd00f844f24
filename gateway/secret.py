"""Comparing a presented secret, token or signature with the expected one."""

from __future__ import annotations

import hmac


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison; None (nothing presented) never matches. surrogatepass: a
    header's bytes that are not UTF-8 (aiohttp keeps them as surrogates) simply do not match."""
    if given is None:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
