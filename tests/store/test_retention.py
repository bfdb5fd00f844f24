"""Retention: delivered events, finished responses, receipts and message ids go after their time,
through indexes; nothing a backend has not had is deleted."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway import store_retention, store_schema
from gateway.store import StepWrite, Store
from tests.store.common import BACKENDS, T0, Clock, answer, event, session, sql


async def test_retention_deletes_only_delivered_rows_delivered_before_the_cutoff(
    store: Store, clock: Clock
) -> None:
    events = tuple(("r1", event(f"e{n}")) for n in range(1, 6))
    await store.commit(StepWrite(events=events))
    seqs = {r.event_id: r.seq for r in await store.list_outbox(backend="crm")}
    await store.mark_delivered([seqs["e1"], seqs["e2"], seqs["e3"]])
    await store.commit(StepWrite(session=session("r9")))  # the marks share this commit
    clock.now = T0 + timedelta(hours=2)
    await store.mark_delivered([seqs["e4"]])  # delivered later: kept
    await store.commit(StepWrite(session=session("r8", address="x")))
    await store.mark_dead(seqs["e5"], "HTTP 400")  # dead letters are never deleted
    cutoff = T0 + timedelta(hours=1)
    assert await store.retention.prune_delivered(cutoff, limit=2) == 2
    assert await store.retention.prune_delivered(cutoff, limit=2) == 1
    assert await store.retention.prune_delivered(cutoff, limit=2) == 0
    left = {(r.event_id, r.backend, r.status) for r in await store.list_outbox()}
    assert left == {("e4", "crm", "delivered"), ("e5", "crm", "dead")} | {
        (f"e{n}", "answers_file", "pending") for n in range(1, 6)
    }


async def test_finished_responses_are_deleted_once_delivered_and_past_their_time(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    def finished(rid: str, status: str = "completed", **kw: Any) -> StepWrite:
        return StepWrite(
            session=session(rid, status=status, **kw),
            answers=(answer(f"a-{rid}", rid),),
            events=((rid, event(f"e-{rid}")),),
        )

    await store.commit(finished("done"))  # every event delivered: goes
    await store.commit(finished("gone", "abandoned"))  # the same
    await store.commit(finished("dead"))  # an event in the dead letters: stays
    await store.commit(finished("waiting"))  # an event still pending: stays
    await store.commit(finished("open", "open"))  # open: never deleted by age
    await store.deliveries.record_sent(
        [{"channel": "sms", "line": "l1", "provider": "twilio", "message_id": "SM-old",
          "response_id": "done", "event_id": "e-done", "at": T0}]
    )  # fmt: skip
    await store.commit(StepWrite(inbound=("sms", "twilio", "SM-in-old", {"status": "ok"})))
    clock.now = T0 + timedelta(hours=2)
    await store.commit(finished("recent"))  # finished after the cutoff: stays
    await store.deliveries.record_sent(
        [{"channel": "sms", "line": "l1", "provider": "twilio", "message_id": "SM-new",
          "response_id": "recent", "event_id": "e-recent", "at": clock.now}]
    )  # fmt: skip
    await store.commit(StepWrite(inbound=("sms", "twilio", "SM-in-new", {"status": "ok"})))
    rows = await store.list_outbox()
    await store.mark_delivered([r.seq for r in rows if r.order_key not in ("dead", "waiting")])
    waiting = [r for r in rows if r.order_key == "waiting"]
    await store.mark_delivered([waiting[0].seq])  # one of its two backends has had it
    await store.mark_dead(next(r.seq for r in rows if r.order_key == "dead"), "HTTP 400")
    await store.commit(StepWrite(session=session("marks", address="x")))  # the marks' commit

    cutoff = T0 + timedelta(hours=1)
    assert await store.retention.prune_responses(cutoff, limit=1) == 1
    assert await store.retention.prune_responses(cutoff, limit=1) == 1
    assert await store.retention.prune_responses(cutoff, limit=1) == 0
    assert await store.retention.prune_receipts(cutoff) == 1
    assert await store.retention.prune_message_ids(cutoff) == 1
    assert await store.retention.prune_message_ids(cutoff) == 0

    db = tmp_path / "db" / "seda.db"
    kept = {"dead", "waiting", "open", "recent", "marks"}
    assert {r for (r,) in sql(db, "SELECT response_id FROM sessions")} == kept
    assert {r for (r,) in sql(db, "SELECT response_id FROM answers")} == kept - {"marks"}
    assert sql(db, "SELECT message_id FROM deliveries") == [("SM-new",)]
    assert sql(db, "SELECT message_id FROM inbound_ids") == [("SM-in-new",)]
    assert await store.session("done") is None and await store.answers_for("done") == []
    # The deleted responses' events (both backends) went with them: they carry the answers.
    left = {(r.order_key, r.backend) for r in await store.list_outbox()}
    assert left == {(r.order_key, r.backend) for r in rows} - {
        (rid, backend) for rid in ("done", "gone") for backend in ("crm", "answers_file")
    }


async def test_retention_uses_its_indexes(tmp_path: Path, clock: Clock) -> None:
    """The deletes find their rows through indexes, never by walking a whole table."""
    opened = await Store.open(tmp_path / "seda.db", backends=BACKENDS, clock=clock)
    await opened.close()

    def plan(query: str, params: tuple[object, ...] = (1.0, 5)) -> str:
        with sqlite3.connect(tmp_path / "seda.db") as conn:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {query}", params).fetchall()
        return " | ".join(row[-1] for row in rows)

    found = plan(store_retention.FINISHED)
    assert "USING INDEX sessions_finished (updated_at<?)" in found, found
    assert "USING INDEX outbox_undelivered (order_key=?)" in found, found
    # Erasure: a listed event by its id, what is left of a queue, the respondent's own events.
    found = plan("DELETE FROM outbox WHERE event_id = ?", ("e",))
    assert "USING INDEX sqlite_autoindex_outbox_1 (event_id=?)" in found, found
    found = plan("DELETE FROM outbox WHERE order_key = ? AND status <> 'delivered'", ("r",))
    assert "USING INDEX outbox_undelivered (order_key=?)" in found, found
    query = f"DELETE FROM outbox WHERE order_key = ? AND {store_schema.RESPONDENT_KEYS}"
    found = plan(query, ("r_x",))
    assert "USING INDEX outbox_respondent (order_key=?)" in found, found
    found = plan("DELETE FROM answers WHERE id = ?", ("a",))
    assert "USING INDEX sqlite_autoindex_answers_1 (id=?)" in found, found
    for table, column in (("inbound_ids", "created_at"), ("deliveries", "sent_at")):
        found = plan(store_retention.OLDEST_FIRST.format(table=table, column=column))
        assert "USING INTEGER PRIMARY KEY (rowid=?)" in found, found
        assert found.count("SCAN") == 1, found  # the subquery's walk from the first rowid


async def test_a_pruned_response_names_the_files_its_answers_kept(
    store: Store, clock: Clock
) -> None:
    """Call recordings of the responses retention deletes go to their channel to delete."""
    spoken = {**answer("a-spoken", "call"), "channel": "ivr", "recording": "2024-05-01/call-r.wav"}
    await store.commit(
        StepWrite(
            session=session("call", status="completed", channel="ivr"),
            answers=(answer("a-keyed", "call"), spoken),
        )
    )
    clock.now = T0 + timedelta(hours=2)
    await store.commit(StepWrite(session=session("recent", status="completed")))
    files: list[dict[str, Any]] = []
    assert await store.retention.prune_responses(T0 + timedelta(hours=1), 10, files) == 1
    assert files == [{"channel": "ivr", "recording": "2024-05-01/call-r.wav"}]
