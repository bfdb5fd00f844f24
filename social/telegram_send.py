"""Telegram prompts as inline keyboards, and Bot API failures as typed delivery errors."""

from __future__ import annotations

import datetime as dtm
import functools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)

from gateway.backends import DeliveryError
from social import render

log = logging.getLogger("seda.telegram")

# PTB 22 warns (a deprecation) each time it builds a RetryAfter unless time periods are opted
# into timedelta, the type they have from PTB 23 on; Seda reads retry_after either way.
os.environ.setdefault("PTB_TIMEDELTA", "true")

MAX_CALLBACK_DATA = 64  # bytes (Bot API, InlineKeyboardButton.callback_data)


def keyboard(prompt: Mapping[str, Any]) -> str | None:
    """The prompt's answers as inline buttons (callback data: the answer code), as the JSON of
    reply_markup: every respondent of a question gets the same keyboard, so it is built once."""
    key = _keyboard_key(prompt)
    return _keyboard(prompt) if key is None else _cached_keyboard(key)


def _keyboard(prompt: Mapping[str, Any]) -> str | None:
    rows = render.rows(prompt)
    return _markup(tuple(tuple(row) for row in rows)) if rows else None


# Everything render.rows() reads from a prompt, with its type: kind, question type, language,
# choices (code, label) and scale bounds. Prompts with the same key get the same keyboard.
KeyboardKey = tuple[str | None, str | None, str, tuple[render.Option, ...], tuple[int, ...] | None]


def _keyboard_key(prompt: Mapping[str, Any]) -> KeyboardKey | None:
    """The prompt's keyboard key, or None when a field is of an unusual type (not cached)."""
    kind, question_type = prompt.get("kind"), prompt.get("question_type")
    language, bounds = prompt.get("language", "en"), prompt.get("scale")
    if not (kind is None or type(kind) is str) or type(language) is not str:
        return None
    if not (question_type is None or type(question_type) is str):
        return None
    if bounds is not None:
        if type(bounds) not in (list, tuple) or any(type(n) is not int for n in bounds):
            return None
        bounds = tuple(bounds)
    given = prompt.get("choices") or []
    if type(given) is not list:
        return None
    choices: list[render.Option] = []
    for choice in given:
        if type(choice) is not dict:
            return None
        code, label = choice.get("code"), choice.get("label")
        if type(code) is not str or type(label) is not str:
            return None
        choices.append((code, label))
    return kind, question_type, language, tuple(choices), bounds


@functools.lru_cache(maxsize=1024)
def _cached_keyboard(key: KeyboardKey) -> str | None:
    kind, question_type, language, choices, bounds = key
    prompt: dict[str, Any] = {"kind": kind, "question_type": question_type, "language": language}
    if choices:
        prompt["choices"] = [{"code": code, "label": label} for code, label in choices]
    if bounds is not None:
        prompt["scale"] = list(bounds)
    return _keyboard(prompt)


@functools.lru_cache(maxsize=1024)
def _markup(rows: tuple[tuple[render.Option, ...], ...]) -> str | None:
    codes = [code for row in rows for code, _ in row]
    if any(not 1 <= len(code.encode("utf-8")) <= MAX_CALLBACK_DATA for code in codes):
        log.warning("answer codes longer than 64 bytes cannot be buttons: sent as text only")
        return None
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=code) for code, label in row] for row in rows]
    )
    return json.dumps(markup.to_dict(), ensure_ascii=False, separators=(",", ":"))


def delivery_error(exc: TelegramError, token: str) -> DeliveryError:
    """What a failed Bot API call means for the outbox: retry (when), or give up."""
    kind = type(exc).__name__
    detail = exc.message.replace(token, "<token>")[:160]
    if isinstance(exc, RetryAfter):
        return DeliveryError(f"telegram {kind}", retryable=True, retry_after=_retry_after(exc))
    if isinstance(exc, Forbidden | BadRequest | ChatMigrated):
        # 403: the respondent blocked the bot; 400: no such chat, or a message Telegram refuses.
        return DeliveryError(f"telegram {kind}: {detail}", retryable=False)
    if isinstance(exc, InvalidToken):
        # The token was revoked or mistyped: retried until the operator fixes it (or gives up).
        return DeliveryError(f"telegram {kind}: the token was refused", retryable=True)
    return DeliveryError(f"telegram {kind}: {detail}", retryable=True)


def _retry_after(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)
