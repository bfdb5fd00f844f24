"""How a prompt becomes buttons on a chat channel: the options, their codes and labels.

Fixed answers get buttons: yes/no, choices, and every numeric scale (NPS 0-10, CSAT 1-5,
CES 1-7, and a `rating` with its survey's min..max, which the channel adds to the prompt as
`scale`). Numbers go in rows of at most 6, split evenly (0-5 and 6-10, 1-4 and 5-7); a 1-5
CSAT or rating is a column of stars (CSAT with a word for each). `number` questions, text,
and a scale wider than MAX_SCALE are answered by typing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gateway.flows.model import SCALES, Question

Option = tuple[str, str]  # (answer code sent back by the button, label shown)

MAX_ROW = 6  # buttons per row: more are too narrow to read on a phone
MAX_SCALE = 20  # points: a wider scale is answered by typing the number
STAR = "⭐"
YES: Mapping[str, str] = {"fa": "بله", "ar": "نعم", "en": "Yes", "ko": "네"}
NO: Mapping[str, str] = {"fa": "خیر", "ar": "لا", "en": "No", "ko": "아니요"}
CHOOSE: Mapping[str, str] = {"fa": "انتخاب کنید", "ar": "اختر", "en": "Choose", "ko": "선택"}
# CSAT's five points in words, from 1 (worst) to 5 (best).
SATISFACTION: Mapping[str, tuple[str, ...]] = {
    "en": ("Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"),
    "fa": ("خیلی ناراضی", "ناراضی", "معمولی", "راضی", "خیلی راضی"),
    "ar": ("غير راضٍ جدًا", "غير راضٍ", "محايد", "راضٍ", "راضٍ جدًا"),
}
_DIGITS: Mapping[str, str] = {"fa": "۰۱۲۳۴۵۶۷۸۹", "ar": "٠١٢٣٤٥٦٧٨٩"}
_ASKS = ("prompt", "invalid")  # prompt kinds that ask a question (notices and closings do not)


def localized(text: str, language: str) -> str:
    """ASCII digits in the language's own script (Persian or Arabic-Indic), else unchanged."""
    digits = _DIGITS.get(language)
    return text.translate(str.maketrans("0123456789", digits)) if digits else text


def word(words: Mapping[str, str], language: str) -> str:
    """A UI word in the language, or English."""
    return words.get(language, words["en"])


def with_scale(prompt: dict[str, Any], question: Question) -> dict[str, Any]:
    """The prompt with its rating's bounds (`scale`), which the core's prompt does not carry."""
    if question.type == "rating" and question.minimum is not None and question.maximum is not None:
        return {**prompt, "scale": [question.minimum, question.maximum]}
    return prompt


def scale(prompt: Mapping[str, Any]) -> tuple[int, int] | None:
    """The numeric scale the prompt's buttons offer, or None (not a scale, or too wide)."""
    kind = prompt.get("question_type")
    if prompt.get("choices"):
        return None
    if kind in SCALES:
        return SCALES[str(kind)]
    bounds = prompt.get("scale")
    if kind != "rating" or not isinstance(bounds, list | tuple) or len(bounds) != 2:
        return None
    low, high = bounds
    if not all(type(n) is int for n in (low, high)) or not 0 <= high - low < MAX_SCALE:
        return None
    return low, high


def rows(prompt: Mapping[str, Any]) -> list[list[Option]]:
    """The prompt's answer buttons, row by row (none for notices, text and open numbers)."""
    if prompt.get("kind") not in _ASKS:
        return []
    kind = prompt.get("question_type")
    language = str(prompt.get("language", "en"))
    choices = [(str(c["code"]), str(c["label"])) for c in prompt.get("choices") or []]
    if choices:
        return [[choice] for choice in choices]
    if kind == "yes_no":
        return [[("yes", word(YES, language)), ("no", word(NO, language))]]
    bounds = scale(prompt)
    if bounds is None:
        return []
    low, high = bounds
    if (low, high) == (1, 5) and kind in ("csat", "rating"):
        return [[option] for option in _stars(str(kind), language)]
    points = [(str(n), localized(str(n), language)) for n in range(low, high + 1)]
    count = math.ceil(len(points) / MAX_ROW)
    size = math.ceil(len(points) / count)  # even rows: 11 -> 6 + 5, 7 -> 4 + 3, 20 -> 4 x 5
    return [points[at : at + size] for at in range(0, len(points), size)]


def _stars(kind: str, language: str) -> list[Option]:
    """1-5 as stars, CSAT with its word when the language has them."""
    words = SATISFACTION.get(language) if kind == "csat" else None
    return [(str(n), STAR * n + (f" {words[n - 1]}" if words else "")) for n in range(1, 6)]


def options(prompt: Mapping[str, Any]) -> list[Option]:
    """The prompt's answer buttons as one list."""
    return [option for row in rows(prompt) for option in row]


def answer_codes(prompt: Mapping[str, Any]) -> frozenset[str]:
    """Every code a button of this prompt can send back."""
    return frozenset(code for code, _ in options(prompt))


def is_scale(prompt: Mapping[str, Any]) -> bool:
    """Whether the prompt's buttons are the numbers of a scale."""
    return scale(prompt) is not None


def shorten(text: str, limit: int) -> str:
    """Text cut to `limit` characters with an ellipsis (providers refuse longer labels)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
