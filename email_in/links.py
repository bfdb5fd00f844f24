"""One-click answers: `GET /email/answer/{token}/{code}` asks, only the POST records.

Mail scanners open every link in a message, so a GET shows a confirmation page and never
changes anything. A link token is signed for one question of one response: a link of a
question already answered, or of a closed response, records nothing.
"""

from __future__ import annotations

import html
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from email_in import texts
from email_in.compose import Link
from email_in.texts import direction, local_digits, say
from email_in.tokens import Tokens
from gateway.flows.model import SCALES, Question, Survey
from gateway.logs import fields
from gateway.model import Inbound
from gateway.results import Result, dedupe_key
from gateway.router import Gateway
from gateway.store import SessionRow

log = logging.getLogger("seda.email")

PATH = "/email/answer/{token}/{code}"
PROVIDER = "link"
MAX_LINKS = 11  # a longer scale is answered by replying
SURVEY_CACHE = 10_000
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def scope(question_id: str) -> str:
    """The token scope of a question's links."""
    return f"question:{question_id}"


def link_codes(question: Question, language: str) -> list[tuple[str, str]]:
    """The (code, label) pairs a question offers as one-click answers (none for text)."""
    if question.type in ("nps", "csat", "ces", "rating"):
        low, high = SCALES.get(question.type, (None, None))
        low = question.minimum if question.minimum is not None else low
        high = question.maximum if question.maximum is not None else high
        if low is None or high is None or not 0 < high - low + 1 <= MAX_LINKS:
            return []
        return [(str(n), local_digits(str(n), language)) for n in range(low, high + 1)]
    if question.type == "yes_no":
        return [("yes", say(texts.YES, language)), ("no", say(texts.NO, language))]
    if question.type == "choice":
        return [(c.id, c.label.get(language, c.id)) for c in question.choices]
    return []


@dataclass(frozen=True)
class Target:
    """What a link points at: the response, its survey, the question, and the answer code."""

    row: SessionRow
    survey: Survey
    question: Question
    code: str
    label: str

    @property
    def language(self) -> str:
        """The response's language."""
        return str(self.row.data.get("language", "en"))

    @property
    def current(self) -> bool:
        """Whether the link's question is the one the response waits for."""
        return self.row.status == "open" and self.row.data.get("question_id") == self.question.id


class AnswerLinks:
    """Makes answer links for prompts and serves them."""

    def __init__(self, gateway: Gateway, tokens: Tokens, base: str | None):
        self.gateway = gateway
        self.tokens = tokens
        self.base = base
        self._surveys: dict[str, str] = {}  # response id -> survey id, which never changes

    def routes(self) -> list[web.RouteDef]:
        """The confirmation page and the recording POST."""
        return [web.get(PATH, self.confirm), web.post(PATH, self.record)]

    async def for_prompts(
        self, response_id: str, prompts: list[Mapping[str, Any]], language: str
    ) -> dict[str, list[Link]]:
        """Links for every question asked in a batch of prompts, by question id."""
        if self.base is None:
            return {}
        survey_id = self._surveys.get(response_id)
        if survey_id is None:
            cached = self.gateway.cached_open_response(response_id)
            if cached is not None:
                survey_id = cached.survey_id
            else:
                row = await self.gateway.store.session(response_id)
                survey_id = str(row.data.get("survey_id")) if row else ""
            if len(self._surveys) >= SURVEY_CACHE:
                self._surveys.pop(next(iter(self._surveys)))
            self._surveys[response_id] = survey_id
        survey = self.gateway.surveys.get(survey_id)
        if survey is None:
            return {}
        links: dict[str, list[Link]] = {}
        for prompt in prompts:
            question_id = prompt.get("question_id")
            if prompt.get("kind") not in ("prompt", "invalid") or not question_id:
                continue
            try:
                question = survey.question(str(question_id))
            except KeyError:
                continue
            token = self.tokens.issue(response_id, scope(question.id))
            links[question.id] = [
                Link(code, label, f"{self.base}/email/answer/{token}/{code}")
                for code, label in link_codes(question, language)
            ]
        return links

    async def confirm(self, request: web.Request) -> web.Response:
        """GET: a page that asks to confirm the answer; it records nothing."""
        target = await self._target(request)
        if isinstance(target, web.Response):
            return target
        if not target.current:
            return _state_page(target)
        expires_at = target.row.expires_at
        if expires_at is not None and expires_at <= self.gateway.clock():
            return _message(target.language, texts.PAGE_CLOSED)  # the sweep has not closed it yet
        body = (
            f"<h1>{_e(say(texts.PAGE_CONFIRM, target.language))}</h1>"
            f"<p>{_e(target.question.prompt.get(target.language, ''))}</p>"
            f"<p>{_e(say(texts.PAGE_YOUR_ANSWER, target.language))} "
            f"<strong>{_e(target.label)}</strong></p>"
            f'<form method="post"><button type="submit" style="font-size:1.1em;padding:8px 20px">'
            f"{_e(say(texts.PAGE_SEND, target.language))}</button></form>"
        )
        return page(target.language, say(texts.PAGE_CONFIRM, target.language), body)

    async def record(self, request: web.Request) -> web.Response:
        """POST: record the answer once (a double click or a replay is the same message)."""
        target = await self._target(request)
        if isinstance(target, web.Response):
            return target
        message_id = f"link.{request.match_info['token']}"
        key = dedupe_key(target.row.address, message_id)
        seen = await self.gateway.store.inbound_result("email", PROVIDER, key)
        if seen is not None:
            return await self._repeat(target, Result.from_json(seen))
        if not target.current:
            return _state_page(target)
        inbound = Inbound(
            kind="reply",
            channel="email",
            provider=PROVIDER,
            address=target.row.address,
            text=target.code,
            input_mode="link",
            message_id=message_id,
            received_at=self.gateway.clock(),
        )
        result = await self.gateway.receive(inbound)
        log.info("email link answer", extra=fields(outcome=result.outcome))
        return _outcome_page(target.language, result)

    async def _repeat(self, target: Target, first: Result) -> web.Response:
        """A question's links share one token: say what its first use did, and thank only
        for the answer that was recorded, not for another button pressed after it."""
        if first.outcome != "accepted":
            return _outcome_page(target.language, first)
        answers = await self.gateway.store.answers_for(target.row.response_id)
        asked = target.question.id
        if any(a.get("question_id") == asked and a.get("raw") == target.code for a in answers):
            return _message(target.language, texts.PAGE_THANKS)
        return _message(target.language, texts.PAGE_ANSWERED)

    async def _target(self, request: web.Request) -> Target | web.Response:
        token, code = request.match_info["token"], request.match_info["code"]
        invalid = _message("en", texts.PAGE_INVALID, 404)
        opened = self.tokens.open(token)
        if opened is None or not _CODE.match(code):
            return invalid
        rid, tag = opened
        row = await self.gateway.store.session(str(uuid.UUID(bytes=rid)))
        survey = self.gateway.surveys.get(str(row.data.get("survey_id"))) if row else None
        if row is None or survey is None or row.channel != "email":
            return invalid
        for question in survey.questions:
            if self.tokens.check(rid, tag, scope(question.id)):
                language = str(row.data.get("language", "en"))
                labels = dict(link_codes(question, language))
                if code not in labels:
                    return _message(language, texts.PAGE_INVALID, 404)
                return Target(row, survey, question, code, labels[code])
        return invalid


def page(language: str, title: str, body: str, status: int = 200) -> web.Response:
    """A small HTML page in the respondent's language and direction."""
    dir_ = direction(language)
    document = (
        f'<!DOCTYPE html><html lang="{_e(language)}" dir="{dir_}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{_e(title)}</title></head>'
        f'<body dir="{dir_}" style="font-family:Tahoma,Arial,sans-serif;max-width:32em;'
        f'margin:2em auto;padding:0 1em;line-height:1.6">{body}</body></html>'
    )
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        charset="utf-8",
        # The token in the URL is the respondent's key: keep it out of caches and referrers.
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _outcome_page(language: str, result: Result) -> web.Response:
    if result.outcome == "accepted":
        return _message(language, texts.PAGE_THANKS)
    if result.outcome == "ignored":
        return _message(language, texts.PAGE_CLOSED)
    return _message(language, texts.PAGE_NOT_UNDERSTOOD, 422)


def _state_page(target: Target) -> web.Response:
    if target.row.status != "open":
        return _message(target.language, texts.PAGE_CLOSED)
    return _message(target.language, texts.PAGE_ANSWERED)


def _message(language: str, words: Mapping[str, str], status: int = 200) -> web.Response:
    text = say(words, language)
    return page(language, text, f"<p>{_e(text)}</p>", status)


def _e(text: str) -> str:
    return html.escape(text, quote=True)
