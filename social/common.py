"""Helpers the chat channels share: their config entries, secret checks, replies, progress."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from aiohttp import web

from gateway import engine
from gateway.config import ConfigError, Problems
from gateway.flows.model import Question, Survey
from gateway.router import Gateway
from gateway.session import Session
from gateway.store import SessionRow
from social import render

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")  # bot and line names appear in webhook URLs


def entries(
    spec: Mapping[str, Any], key: str, channel: str, problems: Problems | None = None
) -> dict[str, Mapping[str, Any]]:
    """The named entries under `channels.<channel>.<key>` (bots, lines), checked: a bad one is
    left out and said in `problems` (without it: a ConfigError naming every bad one)."""
    p = problems if problems is not None else Problems()
    found = spec.get(key)
    where = f"channels.{channel}.{key}"
    if not isinstance(found, Mapping) or not found:
        p.add(f"{where}: configure at least one, by name")
        found = {}
    out: dict[str, Mapping[str, Any]] = {}
    for name, entry in found.items():
        if not isinstance(name, str) or not NAME.match(name):
            p.add(f"{where}: name {name!r} must be 1-64 letters, digits, _ or -")
        elif not isinstance(entry, Mapping):
            p.add(f"{where}.{name}: must be a mapping")
        else:
            out[name] = entry
    if problems is None:
        p.check()
    return out


def text(entry: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    """A non-empty string setting (numbers are taken as written: ids in YAML)."""
    value = entry.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: a non-empty string is required")
    return value


def number(entry: Mapping[str, Any], key: str, where: str, default: float) -> float:
    """A non-negative number setting."""
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{key}: a number of seconds (0 or more) is required")
    return float(value)


def answer(status: str, reason: str = "", code: int = 200, **extra: Any) -> web.Response:
    """The JSON a provider gets back: accepted or ignored (2xx), or an error (4xx)."""
    body: dict[str, Any] = {"status": status, **extra}
    if reason:
        body["reason" if code < 400 else "error"] = reason
    return web.json_response(body, status=code, dumps=_dumps)


def refuse(code: int, reason: str) -> web.Response:
    """A rejected request (4xx) that changed nothing."""
    return answer("rejected", reason, code=code)


async def with_scales(gateway: Gateway, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The event's prompts to send, a rating's with its bounds (for its buttons)."""
    prompts = [dict(p) for p in data.get("prompts", []) if p.get("text")]
    for index, prompt in enumerate(prompts):
        if prompt.get("question_type") == "rating" and prompt.get("question_id"):
            response_id = data.get("response_id")
            found = await _rating(gateway, str(prompt["question_id"]), response_id)
            if found is not None:
                prompts[index] = render.with_scale(prompt, found)
    return prompts


async def _rating(gateway: Gateway, question_id: str, response_id: object) -> Question | None:
    """A rating question by id: from the surveys when they agree on it, else the response's."""
    found = [
        q
        for survey in gateway.surveys.values()
        for q in survey.questions
        if q.id == question_id and q.type == "rating"
    ]
    if len({(q.minimum, q.maximum) for q in found}) == 1:
        return found[0]
    if not found or not isinstance(response_id, str):
        return None
    row = await gateway.store.session(response_id)
    survey = gateway.surveys.get(row.survey_id) if row is not None else None
    return _question(survey, question_id)


def open_question(gateway: Gateway, row: SessionRow | None) -> tuple[Question, Session] | None:
    """The question an open session (as stored) waits for, and the session; None if none."""
    if row is None:
        return None
    session = Session.from_json(row.data)
    question = _question(gateway.surveys.get(session.survey_id), session.question_id or "")
    return None if question is None else (question, session)


def button_codes(current: tuple[Question, Session] | None) -> frozenset[str]:
    """The codes the buttons of the current question (open_question) send; none without one."""
    if current is None:
        return frozenset()
    question, session = current
    prompt = engine.prompt_for(question, session.language).to_json()
    return render.answer_codes(render.with_scale(prompt, question))


def _question(survey: Survey | None, question_id: str) -> Question | None:
    if survey is None:
        return None
    try:
        return survey.question(question_id)
    except KeyError:
        return None


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


class Progress:
    """How many messages of each outbound event went out, so a retry resumes, not repeats."""

    def __init__(self, limit: int = 10_000) -> None:
        self._sent: dict[str, int] = {}
        self._limit = limit

    def sent(self, event_id: str) -> int:
        """Messages of this event already sent."""
        return self._sent.get(event_id, 0)

    def advance(self, event_id: str) -> None:
        """One more message of this event went out."""
        self._sent[event_id] = self._sent.get(event_id, 0) + 1
        while len(self._sent) > self._limit:  # forget the oldest: worst case, a repeat
            del self._sent[next(iter(self._sent))]

    def finish(self, event_id: str) -> None:
        """The event is delivered whole."""
        self._sent.pop(event_id, None)


_V = TypeVar("_V")


class Memory(Generic[_V]):
    """A bounded map in memory: past `limit` entries, the oldest are forgotten."""

    def __init__(self, limit: int) -> None:
        self._items: dict[str, _V] = {}
        self._limit = limit

    def remember(self, key: str, value: _V) -> None:
        """Keep `value` under `key`."""
        self._items[key] = value
        while len(self._items) > self._limit:
            del self._items[next(iter(self._items))]

    def get(self, key: str) -> _V | None:
        """The value kept under `key`, if it is still remembered."""
        return self._items.get(key)
