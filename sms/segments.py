"""How many SMS parts a text costs: GSM-7 (160/153) or, with any other character, UCS-2 (70/67)."""

from __future__ import annotations

from typing import Literal

# 3GPP TS 23.038 default alphabet (without the escape) and its extension table, whose characters
# take two septets each (ESC + char).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")
LIMITS = {"gsm7": (160, 153), "ucs2": (70, 67)}

Encoding = Literal["gsm7", "ucs2"]


def encoding(text: str) -> Encoding:
    """gsm7 when every character is in the GSM-7 tables, else ucs2."""
    allowed = GSM_BASIC | GSM_EXTENSION
    return "gsm7" if all(ch in allowed for ch in text) else "ucs2"


def _units(text: str, enc: Encoding) -> list[int]:
    if enc == "gsm7":
        return [2 if ch in GSM_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # UTF-16 code units


def segments(text: str) -> int:
    """How many SMS parts `text` is sent as (escape and surrogate pairs never split)."""
    enc = encoding(text)
    single, multi = LIMITS[enc]
    units = _units(text, enc)
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > multi:
            parts += 1
            used = 0
        used += size
    return parts
