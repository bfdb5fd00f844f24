"""What the router answers: a step's Result for the channel, Rejected for a request it cannot
honour, Erased for an erasure; and the de-duplication key of a provider message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.model import Outbound

Outcome = Literal["accepted", "ignored", "rejected"]
NO_OPEN_SURVEY = "no open survey for this respondent"  # a reply's reason when none is open
# A reply's reason when its survey had expired and the reply closed it (the expiry sweep had not
# yet): for the channel, the same as NO_OPEN_SURVEY.
EXPIRED = "the survey has expired"


@dataclass(frozen=True)
class Result:
    """What a channel tells its provider: the outcome, and the prompts to send back."""

    outcome: Outcome
    reason: str = ""
    response_id: str | None = None
    outbound: tuple[Outbound, ...] = ()
    completed: bool = False
    duplicate: bool = False
    answers: int = 0
    send_at: str | None = None  # an invitation held back by quiet hours goes out then

    def to_json(self) -> dict[str, Any]:
        """The result as stored for de-duplication and returned by the API."""
        out = {
            "status": self.outcome,
            "reason": self.reason,
            "response_id": self.response_id,
            "prompts": [o.to_json() for o in self.outbound],
            "completed": self.completed,
            "answers": self.answers,
        }
        if self.send_at is not None:
            out["send_at"] = self.send_at
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        """A stored result, replayed for a duplicate message."""
        prompts = tuple(
            Outbound(
                p["kind"],
                p["text"],
                p["language"],
                question_id=p.get("question_id"),
                question_type=p.get("question_type"),
                choices=tuple((c["code"], c["label"], c["key"]) for c in p.get("choices", [])),
            )
            for p in data.get("prompts", [])
        )
        return cls(
            outcome=data["status"],
            reason=data.get("reason", ""),
            response_id=data.get("response_id"),
            outbound=prompts,
            completed=bool(data.get("completed")),
            duplicate=True,
            answers=int(data.get("answers", 0)),
            send_at=data.get("send_at"),
        )


class Rejected(ValueError):
    """The request cannot be honoured; nothing was changed. `status` is the HTTP code to use."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Erased:
    """What `Gateway.erase` deleted (counts), for the operator who asked."""

    respondent_id: str
    responses: int
    answers: int
    events: int  # outbox rows: delivered, pending and dead
    message_ids: int
    files: int  # the channels' own: call recordings, parts of a long SMS not yet whole
    addresses: tuple[str, ...] = ()  # the spellings that held responses, as stored
    note: str | None = None  # what could not be searched (addresses.Spellings.note)

    def to_json(self) -> dict[str, Any]:
        """The API's answer."""
        out: dict[str, Any] = {
            "respondent_id": self.respondent_id,
            "responses": self.responses,
            "answers": self.answers,
            "events": self.events,
            "message_ids": self.message_ids,
            "files": self.files,
            "addresses": list(self.addresses),
        }
        if self.note is not None:
            out["warning"] = self.note
        return out


def dedupe_key(address: str, message_id: str) -> str:
    """The de-duplication key of a provider message, scoped by the respondent's address.

    Some ids are chosen by the sender (an email's Message-ID): one respondent must never get the
    stored result of another's message by reusing its id.
    """
    return f"{address} {message_id}"
