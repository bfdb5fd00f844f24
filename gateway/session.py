"""One run of one survey for one respondent, as the engine sees it between steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SessionStatus = Literal["open", "completed", "abandoned"]


@dataclass(frozen=True)
class Session:
    """The state of a response: where the respondent is and what was answered so far."""

    response_id: str
    survey_id: str
    survey_version: int
    language: str
    channel: str
    provider: str
    address: str
    respondent_id: str
    started_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    question_id: str | None
    attempt: int = 1
    status: SessionStatus = "open"
    context: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)  # question id -> normalised value
    line: str | None = None  # the channel endpoint the respondent talks to (SMS line, bot, ...)
    remind_at: datetime | None = None  # when the survey's one reminder is due, if it is
    reminded: bool = False  # the reminder went out (one per response)

    def evolve(self, **changes: Any) -> Session:
        """A copy with some fields changed."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"Session has no field {sorted(unknown)[0]!r}")
        # dataclasses.replace re-runs __init__ and costs about 10 us; this is a step's hot path.
        copy = object.__new__(Session)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def to_json(self) -> dict[str, Any]:
        """The session as stored."""
        data = self.to_row()
        data["started_at"] = self.started_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        data["remind_at"] = self.remind_at.isoformat() if self.remind_at else None
        return data

    def to_row(self) -> dict[str, Any]:
        """to_json with the times left as datetimes, for the store's encoder (orjson), which
        writes a datetime exactly as isoformat() does: formatting them in C saves the hot path
        three isoformat calls per step."""
        return {
            "response_id": self.response_id,
            "survey_id": self.survey_id,
            "survey_version": self.survey_version,
            "language": self.language,
            "channel": self.channel,
            "provider": self.provider,
            "address": self.address,
            "respondent_id": self.respondent_id,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "question_id": self.question_id,
            "attempt": self.attempt,
            "status": self.status,
            "context": dict(self.context),
            "answers": dict(self.answers),
            "line": self.line,
            "remind_at": self.remind_at,
            "reminded": self.reminded,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        """Rebuild a stored session."""
        expires = data.get("expires_at")
        return cls(
            response_id=data["response_id"],
            survey_id=data["survey_id"],
            survey_version=int(data["survey_version"]),
            language=data["language"],
            channel=data["channel"],
            provider=data["provider"],
            address=data["address"],
            respondent_id=data["respondent_id"],
            started_at=datetime.fromisoformat(data["started_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            question_id=data.get("question_id"),
            attempt=int(data.get("attempt", 1)),
            status=data.get("status", "open"),
            context=dict(data.get("context", {})),
            answers=dict(data.get("answers", {})),
            line=data.get("line"),
            remind_at=datetime.fromisoformat(remind) if (remind := data.get("remind_at")) else None,
            reminded=bool(data.get("reminded", False)),
        )
