"""What the store's tests share: a hand-moved clock, the backends, and row builders."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.store import SessionRow

T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
BACKENDS: dict[str, frozenset[str] | None] = {
    "crm": None,
    "answers_file": frozenset({"answer.recorded"}),
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def session(response_id: str, address: str = "tel:+989120000001", **kw: Any) -> SessionRow:
    values: dict[str, Any] = {
        "channel": "sms",
        "address": address,
        "survey_id": "post_call_nps",
        "status": "open",
        "data": {"step": 0, "note": "سلام"},
        "expires_at": None,
    }
    values.update(kw)
    return SessionRow(response_id=response_id, **values)


def answer(answer_id: str, response_id: str, question_id: str = "nps") -> dict[str, Any]:
    return {"id": answer_id, "response_id": response_id, "question_id": question_id, "value": 9}


def event(event_id: str, kind: str = "answer.recorded") -> dict[str, Any]:
    return {"id": event_id, "type": kind, "timestamp": "2024-05-01T09:30:00.000+00:00", "data": {}}


def sql(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()
