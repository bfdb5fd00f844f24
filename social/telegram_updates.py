"""Telegram updates as Seda reads them: the fast path for plain text (no PTB objects), and
PTB's Update checked for the types Seda relies on (PTB builds objects without checking them),
and what a message says about itself (forwarded? the app's language, a voice note's length,
whether a pressed button's message asks the current question).
"""

from __future__ import annotations

import datetime as dtm
from typing import Any, NamedTuple

from telegram import MaybeInaccessibleMessage, Message, Update

from gateway import engine
from gateway.flows.model import Question
from gateway.session import Session
from social.telegram_bots import TelegramBot


class PlainText(NamedTuple):
    """The parts of a plain text message's update that Seda uses (see plain_text)."""

    update_id: int
    chat_id: int
    chat_type: str
    text: str


# The fields a plain text message may have for plain_text to read it without PTB: each is one
# that PTB's User, Chat or Message takes as it is (no nested object, no conversion but `date`).
_PLAIN_MESSAGE = frozenset({"message_id", "from", "date", "chat", "text"})
_PLAIN_CHAT = frozenset({"id", "type", "title", "username", "first_name", "last_name", "is_forum"})
_PLAIN_USER = frozenset(
    {"id", "is_bot", "first_name", "last_name", "username", "language_code", "is_premium"}
)
_MAX_DATE = 2**32  # a Unix time PTB turns into a datetime without fail


def plain_text(data: Any) -> PlainText | None:
    """A new text message that is no command, read straight from the JSON (PTB's Update.de_json
    builds dozens of objects per update); None for anything else, which goes to PTB. It takes
    only updates PTB would take, with every field it requires: nothing it would refuse (400)."""
    if type(data) is not dict or data.keys() != {"update_id", "message"}:
        return None
    message = data["message"]
    if type(data["update_id"]) is not int or type(message) is not dict:
        return None
    chat, text, user = message.get("chat"), message.get("text"), message.get("from", {})
    if (
        not message.keys() <= _PLAIN_MESSAGE
        or type(message.get("message_id")) is not int
        or type(message.get("date")) is not int
        or not 0 <= message["date"] < _MAX_DATE
        or type(text) is not str
        or text.startswith("/")
        or type(chat) is not dict
        or not chat.keys() <= _PLAIN_CHAT
        or not _telegram_id(chat.get("id"))
        or type(chat.get("type")) is not str
        or type(user) is not dict
        or not user.keys() <= _PLAIN_USER
        or type(user.get("id", 0)) is not int
        or ("from" in message and not {"id", "is_bot", "first_name"} <= user.keys())
    ):
        return None
    return PlainText(data["update_id"], chat["id"], chat["type"], text)


class Unreadable(ValueError):
    """An update with an id that PTB cannot read, or whose fields have the wrong types."""

    def __init__(self, update_id: int, problem: str) -> None:
        super().__init__(f"malformed update: {problem}")
        self.update_id = update_id
        self.problem = problem


def parse_update(data: Any, bot: TelegramBot) -> Update:
    """A PTB Update from the JSON body; ValueError when it is not one (Unreadable when it has
    an update_id but no more can be read)."""
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        raise ValueError("no update_id")
    try:
        update = Update.de_json(data, bot.app.bot)
    except (KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise Unreadable(data["update_id"], type(exc).__name__) from exc
    problem = _shape_problem(update)
    if problem is not None:
        raise Unreadable(data["update_id"], problem)
    return update


def _telegram_id(value: object) -> bool:
    """A chat or user id as Telegram sends them: an integer of at most 52 bits (not a bool)."""
    return type(value) is int and -(2**52) <= value < 2**52


def _shape_problem(update: Update) -> str | None:
    """PTB builds objects without checking types: what Seda reads must have its type (a chat
    id as text would answer for chat "777" as if it were 777)."""
    message, query, member = update.message, update.callback_query, update.my_chat_member
    if message is not None:
        if message.chat is None or not _telegram_id(message.chat.id):
            return "message.chat.id"
        if message.text is not None and type(message.text) is not str:
            return "message.text"
        voice = message.voice
        if voice is not None and not isinstance(voice.duration, int | float | dtm.timedelta):
            return "message.voice.duration"
    if query is not None:
        if query.from_user is None or not _telegram_id(query.from_user.id):
            return "callback_query.from"
        if query.data is not None and type(query.data) is not str:
            return "callback_query.data"
        held = query.message
        if held is not None and (held.chat is None or not _telegram_id(held.chat.id)):
            return "callback_query.message.chat.id"
    if member is not None:
        if member.chat is None or not _telegram_id(member.chat.id):
            return "my_chat_member.chat.id"
        if member.new_chat_member is None or not isinstance(member.new_chat_member.status, str):
            return "my_chat_member.new_chat_member.status"
    return None


def asks_current(
    held: MaybeInaccessibleMessage | None, current: tuple[Question, Session], codes: frozenset[str]
) -> bool:
    """Whether the message a button is on asks the current question: its keyboard sends the
    current question's codes and its text ends with that question's prompt or invalid-reply
    prompt (a reply answered inline joins a step's messages, the keyboard on the last). What
    the update does not show (a message over 48 hours old has neither) counts as current."""
    if not isinstance(held, Message):
        return True
    question, session = current
    markup = held.reply_markup
    if markup is not None:
        sent = {b.callback_data for row in markup.inline_keyboard for b in row}
        if sent != codes:
            return False
    text = held.text.strip() if isinstance(held.text, str) else ""
    if not text:
        return True
    asked = (
        engine.prompt_for(question, session.language),
        engine.invalid_prompt(question, session.language),
    )
    return any(p.text.strip() and text.endswith(p.text.strip()) for p in asked)


def forwarded(message: Message) -> bool:
    """A forwarded message: forward_origin (Bot API 7.0), or the older forward_date that
    Telegram may still send (PTB keeps it in api_kwargs)."""
    return message.forward_origin is not None or "forward_date" in message.api_kwargs


def seconds(duration: int | dtm.timedelta | None) -> float | None:
    """A Telegram duration (seconds, or a timedelta with PTB_TIMEDELTA) in seconds."""
    if isinstance(duration, dtm.timedelta):
        return duration.total_seconds()
    return None if duration is None else float(duration)


def app_language(message: Message) -> str | None:
    user = message.from_user
    code = user.language_code if user is not None else None
    return code.split("-", 1)[0].lower() if code else None
