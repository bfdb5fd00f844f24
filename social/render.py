"""How a prompt becomes buttons on a chat channel: the options, their codes and labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Option = tuple[str, str]  # (answer code sent back by the button, label shown)

# The scales whose bounds every prompt implies (rating and number carry theirs in the survey
# only, which the prompt does not repeat, so they are answered by text).
SCALES: Mapping[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
YES: Mapping[str, str] = {"fa": "بله", "ar": "نعم", "en": "Yes"}
NO: Mapping[str, str] = {"fa": "خیر", "ar": "لا", "en": "No"}
CHOOSE: Mapping[str, str] = {"fa": "انتخاب کنید", "ar": "اختر", "en": "Choose"}
_DIGITS: Mapping[str, str] = {"fa": "۰۱۲۳۴۵۶۷۸۹", "ar": "٠١٢٣٤٥٦٧٨٩"}
_ASKS = ("prompt", "invalid")  # prompt kinds that ask a question (notices and closings do not)


def localized(text: str, language: str) -> str:
    """ASCII digits in the language's own script (Persian or Arabic-Indic), else unchanged."""
    digits = _DIGITS.get(language)
    return text.translate(str.maketrans("0123456789", digits)) if digits else text


def word(words: Mapping[str, str], language: str) -> str:
    """A UI word in the language, or English."""
    return words.get(language, words["en"])


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
    if kind in SCALES:
        low, high = SCALES[str(kind)]
        scale = [(str(n), localized(str(n), language)) for n in range(low, high + 1)]
        if kind == "nps":  # 0-5 and 6-10: eleven buttons in one row are too narrow on a phone
            return [scale[:6], scale[6:]]
        return [scale]
    return []


def options(prompt: Mapping[str, Any]) -> list[Option]:
    """The prompt's answer buttons as one list."""
    return [option for row in rows(prompt) for option in row]


def answer_codes(prompt: Mapping[str, Any]) -> frozenset[str]:
    """Every code a button of this prompt can send back."""
    return frozenset(code for code, _ in options(prompt))


def is_scale(prompt: Mapping[str, Any]) -> bool:
    """Whether the prompt's buttons are the numbers of a fixed scale."""
    return prompt.get("question_type") in SCALES and not prompt.get("choices")


def shorten(text: str, limit: int) -> str:
    """Text cut to `limit` characters with an ellipsis (providers refuse longer labels)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
