"""Value types shared by the core and every channel: inbound, outbound, answers, events."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

QuestionType = Literal["nps", "csat", "ces", "rating", "yes_no", "choice", "text", "number"]
InputMode = Literal["dtmf", "speech", "text", "button", "link"]
InboundKind = Literal["start", "reply", "end"]

QUESTION_TYPES: tuple[str, ...] = (
    "nps", "csat", "ces", "rating", "yes_no", "choice", "text", "number",
)  # fmt: skip
INPUT_MODES: tuple[str, ...] = ("dtmf", "speech", "text", "button", "link")
CHANNELS: tuple[str, ...] = ("ivr", "sms", "email", "telegram", "whatsapp", "api")
ANSWER_FORMAT_VERSION = 1


_ISO_CACHE: dict[int, tuple[datetime, str]] = {}


def iso(moment: datetime) -> str:
    """ISO 8601 with offset, to the millisecond."""
    # One step formats the same few datetime objects several times (answer, event, response).
    # Keyed by identity: hashing an aware datetime costs more than formatting it, and equal
    # instants in two zones are equal datetimes that print differently. The cache holds each
    # object, so its id cannot be reused while cached.
    hit = _ISO_CACHE.get(id(moment))
    if hit is not None and hit[0] is moment:
        return hit[1]
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Seda keeps every time with its offset")
    if len(_ISO_CACHE) >= 64:
        _ISO_CACHE.clear()
    text = moment.isoformat(timespec="milliseconds")
    _ISO_CACHE[id(moment)] = (moment, text)
    return text


@dataclass(frozen=True)
class Respondent:
    """A stable pseudonymous id plus the addresses seen (tel:+98..., mailto:..., telegram:123)."""

    id: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Inbound:
    """One thing a channel received: a survey start, a reply, or the end of a conversation."""

    kind: InboundKind
    channel: str
    provider: str
    address: str
    received_at: datetime
    text: str = ""
    input_mode: InputMode = "text"
    transcript: str | None = None
    confidence: float | None = None
    message_id: str | None = None
    survey_id: str | None = None  # kind "start": which survey
    language: str | None = None  # kind "start": the respondent's language
    context: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # kind "end": hangup, expired, ...
    line: str | None = None  # the channel's own endpoint: an SMS line, a bot, a reply domain
    answered_inline: bool = False  # the channel returns the prompts in its own response (TwiML)
    recording: str | None = None  # the caller's recorded answer, relative to the recordings dir


OutboundKind = Literal["prompt", "invalid", "closing", "notice"]


@dataclass(frozen=True)
class Outbound:
    """One prompt for a channel to render its own way (audio, SMS text, buttons)."""

    kind: OutboundKind
    text: str
    language: str
    question_id: str | None = None
    question_type: str | None = None
    audio: str | None = None
    choices: tuple[tuple[str, str, str | None], ...] = ()  # (answer code, label, dtmf key)

    def to_json(self) -> dict[str, Any]:
        """The prompt as the API channel returns it."""
        out: dict[str, Any] = {"kind": self.kind, "text": self.text, "language": self.language}
        if self.question_id is not None:
            out["question_id"] = self.question_id
            out["question_type"] = self.question_type
        if self.choices:
            out["choices"] = [{"code": c, "label": label, "key": k} for c, label, k in self.choices]
        return out


@dataclass(frozen=True)
class Answer:
    """Answer format v1: one answered question (schema: gateway/schemas/answer.v1.json)."""

    id: str
    response_id: str
    survey_id: str
    survey_version: int
    question_id: str
    question_type: str
    value: int | bool | str | None
    raw: str
    input_mode: InputMode
    attempt: int
    language: str
    channel: str
    provider: str
    respondent: Respondent
    context: dict[str, str]
    answered_at: datetime
    received_at: datetime
    transcript: str | None = None
    confidence: float | None = None
    message_id: str | None = None
    recording: str | None = None  # speech answers to text questions, when recordings are kept

    def to_json(self) -> dict[str, Any]:
        """The answer as it leaves Seda (checked against the published schema in tests)."""
        out: dict[str, Any] = {
            "format": ANSWER_FORMAT_VERSION,
            "id": self.id,
            "response_id": self.response_id,
            "survey_id": self.survey_id,
            "survey_version": self.survey_version,
            "question_id": self.question_id,
            "question_type": self.question_type,
            "value": self.value,
            "raw": self.raw,
            "input_mode": self.input_mode,
            "attempt": self.attempt,
            "language": self.language,
            "channel": self.channel,
            "provider": self.provider,
            "respondent": {
                "id": self.respondent.id,
                "addresses": list(self.respondent.addresses),
            },
            "context": dict(self.context),
            "answered_at": iso(self.answered_at),
            "received_at": iso(self.received_at),
        }
        if self.input_mode == "speech":
            out["transcript"] = self.transcript
            out["confidence"] = self.confidence
        if self.message_id is not None:
            out["message_id"] = self.message_id
        if self.recording is not None:
            out["recording"] = self.recording
        return out


EventType = Literal[
    "answer.recorded",
    "response.completed",
    "response.abandoned",
    "respondent.opted_out",
    "respondent.opted_in",
    "respondent.erased",
]


@dataclass(frozen=True)
class Event:
    """Something the backends hear about; delivered through the outbox in order per response."""

    id: str
    type: EventType | str  # or outbound.<channel>: prompts for a channel that sends them itself
    response_id: str | None
    occurred_at: datetime
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The envelope every backend receives."""
        return {
            "id": self.id,
            "type": self.type,
            "timestamp": iso(self.occurred_at),
            "data": self.data,
        }


_SURROGATE = re.compile("[\ud800-\udfff]")
_TEXTS = ("address", "text", "transcript", "message_id", "line", "survey_id", "language", "reason")


def storable(inbound: Inbound) -> Inbound:
    """The inbound with every lone surrogate (JSON "\\ud800", which Python's own JSON parser
    and PTB take) as U+FFFD: it cannot be written as UTF-8, so the commit would refuse the
    whole reply. Text that is already valid is returned as it is (the same object)."""
    changes: dict[str, Any] = {}
    for name in _TEXTS:
        value = getattr(inbound, name)
        if value is not None and not value.isascii() and _SURROGATE.search(value):
            changes[name] = _SURROGATE.sub("\ufffd", value)
    context = inbound.context
    if any(not (k + v).isascii() and _SURROGATE.search(k + v) for k, v in context.items()):
        changes["context"] = {
            _SURROGATE.sub("\ufffd", k): _SURROGATE.sub("\ufffd", v) for k, v in context.items()
        }
    return replace(inbound, **changes) if changes else inbound
