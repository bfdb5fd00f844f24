"""JSON as Seda stores and sends it: compact UTF-8, Persian and Arabic letters kept readable.

orjson does this in C at a tenth of the cost of the standard library on the reply path.
"""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces, no \\u escapes for non-ASCII letters)."""
    return orjson.dumps(value).decode("utf-8")


def dumpb(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, ready for the wire or a file."""
    return orjson.dumps(value)


def loads(data: str | bytes) -> Any:
    """Parse JSON text or UTF-8 bytes (raises JSONDecodeError, a ValueError)."""
    return orjson.loads(data)
