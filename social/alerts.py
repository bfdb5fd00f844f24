"""Low-score alerts: a backend that tells a Telegram chat (a manager's group) about a bad answer.

A backend, so the alert goes through the outbox like every other delivery: stored in the same
transaction as the answer, retried with backoff while the Bot API is down, dead-lettered only
after the retry horizon. `type: telegram_alert` in `backends:` (see social/README.md).

Alerts carry no personal data unless asked: the respondent's pseudonymous id, never an address
(`include_address: true` opts in), and only the context keys listed in `context_keys`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telegram import Bot
from telegram.error import TelegramError

from gateway.flows.conditions import ConditionError, Expression, parse
from gateway.ids import Clock
from social import render
from social.common import Progress
from social.telegram_request import AiohttpRequest
from social.telegram_send import delivery_error

log = logging.getLogger("seda.telegram.alerts")

MAX_TEXT = 4096  # characters in one Telegram message
_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})\Z")  # id or @channelusername
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\}")
_RULE_KEYS = frozenset({"survey", "question", "question_type", "if"})
PLACEHOLDERS = frozenset(
    {"survey", "question", "question_type", "score", "channel", "provider", "language",
     "context", "respondent", "response", "agent", "queue", "address"}
)  # fmt: skip
DEFAULT_CONTEXT_KEYS = ("agent", "queue", "store", "ticket")
TEMPLATES: Mapping[str, str] = {
    "en": "⚠️ Low score: {question} = {score}\nSurvey: {survey} · channel: {channel}\n"
    "{context}\nRespondent: {respondent} · response: {response}",
    "fa": "⚠️ امتیاز پایین: {question} = {score}\nنظرسنجی: {survey} · کانال: {channel}\n"
    "{context}\nپاسخ‌دهنده: {respondent} · پاسخ: {response}",
    "ar": "⚠️ تقييم منخفض: {question} = {score}\nالاستبيان: {survey} · القناة: {channel}\n"
    "{context}\nالمستجيب: {respondent} · الرد: {response}",
}
ADDRESS_LINE = "\n{address}"  # added to the built-in templates when include_address is on


@dataclass(frozen=True)
class Rule:
    """Alert on an answer of this survey / question / question type when `condition` holds."""

    condition: Expression
    survey: str | None = None
    question: str | None = None
    question_type: str | None = None

    def matches(self, answer: Mapping[str, Any]) -> bool:
        """Whether the answer (answer format v1) is one to alert about."""
        for key, wanted in (("survey_id", self.survey), ("question_id", self.question),
                            ("question_type", self.question_type)):  # fmt: skip
            if wanted is not None and answer.get(key) != wanted:
                return False
        env: dict[str, object] = {
            "value": answer.get("value"),
            "language": answer.get("language"),
            "channel": answer.get("channel"),
        }
        context = answer.get("context")
        if isinstance(context, Mapping):
            env.update({f"context.{k}": v for k, v in context.items()})
        return self.condition.evaluate(env)


class TelegramAlert:
    """Sends one Telegram message per response whose answer breaks a rule (answer.recorded)."""

    def __init__(
        self,
        name: str,
        *,
        token: str,
        chat_id: int | str,
        rules: tuple[Rule, ...],
        templates: Mapping[str, str],
        language: str,
        context_keys: tuple[str, ...] = DEFAULT_CONTEXT_KEYS,
        include_address: bool = False,
        base_url: str | None = None,
    ) -> None:
        self.name = name
        self._token = token
        self._chat_id = chat_id
        self._rules = rules
        self._templates = dict(templates)
        self._language = language
        self._context_keys = context_keys
        self._include_address = include_address
        # The second request object is for getUpdates, which an alert backend never calls.
        self._requests = (AiohttpRequest(pool_size=4), AiohttpRequest(pool_size=1))
        self._bot = Bot(
            token,
            base_url=base_url or "https://api.telegram.org/bot",
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )
        self._ready = False
        self._alerted = Progress()  # response ids already alerted (in memory; see README)

    def __repr__(self) -> str:
        return f"TelegramAlert({self.name!r}, rules={len(self._rules)})"

    async def deliver(self, event: dict[str, Any]) -> None:
        """Alert about an answer that breaks a rule, once per response; other events: nothing."""
        if event.get("type") != "answer.recorded":
            return
        answer = event.get("data")
        if not isinstance(answer, Mapping) or not any(r.matches(answer) for r in self._rules):
            return
        response_id = str(answer.get("response_id", ""))
        if self._alerted.sent(response_id):
            return  # this response already raised its alert
        text = self.message(answer)
        try:
            if not self._ready:
                await self._bot.initialize()  # getMe: checks the token once
                self._ready = True
            await self._bot.send_message(self._chat_id, text)
        except TelegramError as exc:
            raise delivery_error(exc, self._token) from None
        self._alerted.advance(response_id)
        log.info("low-score alert sent", extra={"fields": {"backend": self.name}})

    def message(self, answer: Mapping[str, Any]) -> str:
        """The alert text for an answer, in its language (else the default language)."""
        language = str(answer.get("language", ""))
        template = self._templates.get(language) or self._templates[self._language]
        if language not in self._templates:
            language = self._language
        values = self._values(answer, language)
        text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), "-"), template)
        return render.shorten(text, MAX_TEXT)

    def _values(self, answer: Mapping[str, Any], language: str) -> dict[str, str]:
        context = answer.get("context")
        context = context if isinstance(context, Mapping) else {}
        respondent = answer.get("respondent")
        respondent = respondent if isinstance(respondent, Mapping) else {}
        shown = [(k, str(context[k])) for k in self._context_keys if k in context]
        values = {
            "survey": str(answer.get("survey_id", "")),
            "question": str(answer.get("question_id", "")),
            "question_type": str(answer.get("question_type", "")),
            "score": _score(answer.get("value"), language),
            "channel": str(answer.get("channel", "")),
            "provider": str(answer.get("provider", "")),
            "language": language,
            "context": " · ".join(f"{k}: {v}" for k, v in shown) or "-",
            "respondent": str(respondent.get("id", "")),
            "response": str(answer.get("response_id", "")),
            **{f"context.{k}": v for k, v in shown},
        }
        values["agent"] = values.get("context.agent", "-")
        values["queue"] = values.get("context.queue", "-")
        if self._include_address:
            addresses = respondent.get("addresses") or []
            values["address"] = ", ".join(str(a) for a in addresses) or "-"
        return values

    async def close(self) -> None:
        """Close the Bot API connections."""
        if self._ready:
            self._ready = False
            await self._bot.shutdown()
        for request in self._requests:
            await request.shutdown()


def _score(value: object, language: str) -> str:
    if isinstance(value, bool):
        return render.word(render.YES if value else render.NO, language)
    return render.localized(str(value), language) if value is not None else "-"


def build(name: str, spec: Mapping[str, Any], *, clock: Clock) -> TelegramAlert:
    """A telegram_alert backend from its config entry; ValueError says what is wrong."""
    del clock  # alerts are sent now; the answer carries its own times
    where = f"backend {name!r}"
    token = spec.get("token")
    if not isinstance(token, str) or ":" not in token:
        raise ValueError(f"{where}: type telegram_alert needs the bot's `token`")
    chat_id = spec.get("chat_id")
    if isinstance(chat_id, bool) or not _CHAT.match(str(chat_id)):
        raise ValueError(f"{where}: `chat_id` must be a chat id (-100...) or an @channel name")
    base_url = spec.get("base_url")
    if base_url is not None and not (
        isinstance(base_url, str) and re.match(r"^https?://", base_url)
    ):
        raise ValueError(f"{where}: `base_url` must be an http(s) URL")
    include_address = spec.get("include_address", False)
    if not isinstance(include_address, bool):
        raise ValueError(f"{where}: `include_address` is true or false")
    keys = spec.get("context_keys", list(DEFAULT_CONTEXT_KEYS))
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise ValueError(f"{where}: `context_keys` is a list of context names")
    templates, language = _templates(where, spec, include_address, tuple(keys))
    chat: int | str = str(chat_id) if str(chat_id).startswith("@") else int(str(chat_id))
    return TelegramAlert(
        name,
        token=token,
        chat_id=chat,
        rules=_rules(where, spec.get("rules")),
        templates=templates,
        language=language,
        context_keys=tuple(keys),
        include_address=include_address,
        base_url=base_url,
    )


def _rules(where: str, found: Any) -> tuple[Rule, ...]:
    if not isinstance(found, list) or not found:
        raise ValueError(f"{where}: `rules` lists at least one {{question_type, if}} rule")
    rules = []
    for index, entry in enumerate(found):
        at = f"{where}: rules[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("if"), str):
            raise ValueError(f'{at}: a mapping with an `if:` condition, e.g. "value <= 6"')
        unknown = set(entry) - _RULE_KEYS
        if unknown:
            raise ValueError(f"{at}: unknown key {sorted(unknown)[0]!r}")
        try:
            condition = parse(entry["if"])
        except ConditionError as exc:
            raise ValueError(f"{at}.if: {exc}") from None
        names = {k: entry.get(k) for k in ("survey", "question", "question_type")}
        if any(v is not None and not isinstance(v, str) for v in names.values()):
            raise ValueError(f"{at}: survey, question and question_type are names")
        rules.append(Rule(condition, **names))
    return tuple(rules)


def _templates(
    where: str, spec: Mapping[str, Any], include_address: bool, keys: tuple[str, ...]
) -> tuple[dict[str, str], str]:
    """The message per language (the built-in ones unless `message` is given) and the default."""
    given = spec.get("message")
    if given is None:
        suffix = ADDRESS_LINE if include_address else ""
        templates = {lang: text + suffix for lang, text in TEMPLATES.items()}
    elif (
        isinstance(given, Mapping)
        and given
        and all(isinstance(k, str) and isinstance(v, str) and v for k, v in given.items())
    ):
        templates = dict(given)
    else:
        raise ValueError(f"{where}: `message` maps languages to message texts")
    allowed = PLACEHOLDERS | {f"context.{k}" for k in keys}
    for lang, text in templates.items():
        for placeholder in _PLACEHOLDER.findall(text):
            if placeholder == "address" and not include_address:
                raise ValueError(
                    f"{where}: message.{lang}: {{address}} is personal data;"
                    " set include_address: true to send it"
                )
            if placeholder not in allowed:
                raise ValueError(f"{where}: message.{lang}: unknown placeholder {{{placeholder}}}")
    language = spec.get("language", "en" if "en" in templates else next(iter(templates)))
    if language not in templates:
        raise ValueError(f"{where}: `language` {language!r} has no message")
    return templates, str(language)
