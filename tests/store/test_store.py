"""The SQLite store: durability settings, migrations, group commit, reads, the outbox queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiosqlite
import pytest

from gateway import store_writer
from gateway.store import DuplicateMessage, StepWrite, Store, StoreError
from gateway.store_schema import MIGRATIONS, SCHEMA_VERSION, configure
from tests.store.common import BACKENDS, T0, Clock, answer, event, session, sql

# -- durability and schema ----------------------------------------------------------------------


async def test_wal_and_full_sync_are_set_and_read_back(tmp_path: Path, store: Store) -> None:
    assert sql(tmp_path / "db" / "seda.db", "PRAGMA journal_mode") == [("wal",)]
    async with aiosqlite.connect(tmp_path / "db" / "seda.db", isolation_level=None) as conn:
        await configure(conn, writer=True)
        assert list(await conn.execute_fetchall("PRAGMA synchronous")) == [(2,)]


async def test_a_new_database_is_for_its_owner_only_and_an_open_one_is_reported(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "var" / "seda.db"
    store = await Store.open(path, backends=BACKENDS, clock=clock)
    await store.commit(StepWrite(session=session("r1")))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [path.parent, *path.parent.iterdir()]}
    assert modes == {"var": 0o700, "seda.db": 0o600, "seda.db-wal": 0o600, "seda.db-shm": 0o600}
    await store.close()
    assert not [r for r in caplog.records if "readable by other users" in r.getMessage()]
    path.chmod(0o644)
    store = await Store.open(path, backends=BACKENDS, clock=clock)
    await store.close()
    (warning,) = [r for r in caplog.records if "readable by other users" in r.getMessage()]
    assert warning.fields["mode"] == "0o644"  # type: ignore[attr-defined]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the operator's choice is left alone


async def test_a_database_without_wal_is_refused(clock: Clock) -> None:
    with pytest.raises(StoreError, match="journal_mode is 'memory', not 'wal'"):
        await Store.open(Path(":memory:"), backends=BACKENDS, clock=clock)


async def test_migrations_run_once_and_reopen_is_idempotent(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "seda.db"
    for round_ in range(3):
        store = await Store.open(path, backends=BACKENDS, clock=clock)
        await store.commit(StepWrite(session=session(f"r{round_}", address=f"a{round_}")))
        await store.close()
        assert sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sql(path, "SELECT response_id FROM sessions ORDER BY 1") == [("r0",), ("r1",), ("r2",)]


async def test_a_version_3_outbox_keeps_its_queue_through_the_migrations(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Migration 4 (the pending head index) keeps the queue; migration 6 lists each
    response's answers and events in its session, so replay and answers still find them."""
    path = tmp_path / "seda.db"
    with sqlite3.connect(path) as conn:
        for migration in MIGRATIONS[:3]:
            conn.executescript(migration)
        conn.execute("PRAGMA user_version = 3")
        rows = [
            ("e1", "r1", "pending", 1),
            ("e2", "r1", "pending", 0),
            ("e3", "r2", "delivered", 0),
        ]
        for response_id in ("r1", "r2"):
            conn.execute(
                "INSERT INTO sessions (response_id, channel, address, survey_id, status, data,"
                " updated_at) VALUES (?, 'api', ?, 's', 'completed', '{}', 0)",
                (response_id, f"tel:{response_id}"),
            )
        conn.execute(
            "INSERT INTO answers (id, response_id, question_id, data, created_at)"
            " VALUES ('a1', 'r2', 'q', ?, 0)",
            (json.dumps(answer("a1", "r2")),),
        )
        for event_id, key, status, head in rows:
            conn.execute(
                "INSERT INTO outbox (event_id, backend, order_key, event_type, payload, status,"
                " next_attempt_at, created_at, queued_at, head)"
                " VALUES (?, 'crm', ?, 'answer.recorded', ?, ?, 0, 0, 0, ?)",
                (event_id, key, json.dumps(event(event_id)), status, head),
            )
    caplog.set_level("INFO", logger="gateway.store_schema")
    store = await Store.open(path, backends=BACKENDS, clock=clock)
    try:
        assert sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        migrated = [
            r.fields["version"] for r in caplog.records if r.getMessage() == "schema migrated"
        ]
        assert migrated == list(range(4, SCHEMA_VERSION + 1))
        indexes = {
            name for (name,) in sql(path, "SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert "outbox_pending" in indexes and "outbox_head" not in indexes
        assert "sessions_finished" in indexes  # migration 5, for retention
        assert {"outbox_undelivered", "outbox_respondent"} <= indexes  # migration 6
        assert not {"outbox_order", "answers_response"} & indexes
        listed = dict(sql(path, "SELECT response_id, events FROM sessions"))
        assert sorted(listed["r1"].split()) == ["e1", "e2"]
        assert sorted(listed["r2"].split()) == ["a1", "e3"]
        assert await store.answers_for("r2") == [answer("a1", "r2")]
        heads = await store.claim_ready("crm", clock(), limit=10)
        assert [h.event_id for h in heads] == ["e1"]
        await store.mark_delivered([heads[0].seq])
        await store.commit(StepWrite(events=(("r1", event("e4")),)))  # behind e2, not a head
        assert [h.event_id for h in await store.claim_ready("crm", clock(), limit=10)] == ["e2"]
        assert await store.replay("crm", response_id="r2") == 1
        assert [h.event_id for h in await store.claim_ready("crm", clock(), limit=10)] == [
            "e2",
            "e3",
        ]
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "seda.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this Seda"):
        await Store.open(path, backends=BACKENDS, clock=clock)


# -- group commit -------------------------------------------------------------------------------


@pytest.mark.parametrize("in_process", [False, True], ids=["writer-thread", "writer-process"])
async def test_concurrent_commits_share_few_transactions(
    tmp_path: Path, clock: Clock, in_process: bool
) -> None:
    path = tmp_path / "seda.db"
    store = await Store.open(path, backends=BACKENDS, clock=clock, writer_process=in_process)
    writes = [
        StepWrite(
            session=session(f"r{n}", address=f"tel:+98912{n:07d}"),
            answers=(answer(f"a{n}", f"r{n}"),),
            events=((f"r{n}", event(f"e{n}")),),
            inbound=("sms", "kavenegar", f"m{n}", {"ok": True}),
        )
        for n in range(200)
    ]
    await asyncio.gather(*(store.commit(w) for w in writes))
    assert 1 <= store.batches_committed <= 10
    await store.close()

    store = await Store.open(path, backends=BACKENDS, clock=clock)
    try:
        assert sql(path, "SELECT COUNT(*) FROM sessions") == [(200,)]
        assert sql(path, "SELECT COUNT(*) FROM answers") == [(200,)]
        assert sql(path, "SELECT COUNT(*) FROM inbound_ids") == [(200,)]
        assert sql(path, "SELECT backend, COUNT(*) FROM outbox GROUP BY 1 ORDER BY 1") == [
            ("answers_file", 200),
            ("crm", 200),
        ]
        assert await store.answers_for("r7") == [answer("a7", "r7")]
    finally:
        await store.close()


async def test_a_bad_write_fails_only_its_own_caller(store: Store) -> None:
    await store.commit(StepWrite(session=session("taken", address="tel:+989121111111")))
    before = store.batches_committed
    good = [StepWrite(session=session(f"g{n}", address=f"tel:+98912222{n:04d}")) for n in range(10)]
    bad = StepWrite(session=session("clash", address="tel:+989121111111"))
    results = await asyncio.gather(
        *(store.commit(w) for w in [*good[:5], bad, *good[5:]]), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 5 + ["StoreError"] + [
        "NoneType"
    ] * 5
    assert "UNIQUE" in str(results[5])
    assert store.batches_committed - before == 10  # the batch failed; each good write alone
    for n in range(10):
        assert await store.session(f"g{n}") is not None
    assert await store.session("clash") is None
    await store.commit(StepWrite(session=session("after", address="tel:+989123333333")))


async def test_a_lost_writer_process_fails_its_batch_once_and_is_replaced(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "seda.db"
    store = await Store.open(path, backends=BACKENDS, clock=clock, writer_process=True)
    try:
        await store.commit(StepWrite(session=session("r1")))
        first = store._process._process  # type: ignore[union-attr]
        os.kill(first.pid, signal.SIGSTOP)  # so that the next write is in flight when it dies
        pending = asyncio.ensure_future(
            store.commit(StepWrite(session=session("r2", address="tel:+989120000002")))
        )
        await asyncio.sleep(0.05)  # the write has left for the stopped process
        assert not pending.done()
        first.kill()
        await asyncio.to_thread(first.join, 10)
        # Its fate unknown, the write is failed to its caller and never written again.
        with pytest.raises(StoreError, match="writer process stopped"):
            await pending
        assert await store.session("r2") is None
        # The next commit starts a new writer process.
        await store.commit(StepWrite(session=session("r3", address="tel:+989120000003")))
        second = store._process._process  # type: ignore[union-attr]
        assert second is not None and second.pid != first.pid and second.is_alive()
        assert await store.session("r3") is not None
    finally:
        await store.close()
    assert not second.is_alive()  # closing the store ends its writer process
    assert sql(path, "SELECT response_id FROM sessions ORDER BY 1") == [("r1",), ("r3",)]


async def test_closing_does_not_wait_forever_for_a_hung_writer_process(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_writer, "CLOSE_TIMEOUT", 0.2)
    store = await Store.open(
        tmp_path / "seda.db", backends=BACKENDS, clock=clock, writer_process=True
    )
    child = store._process._process  # type: ignore[union-attr]
    os.kill(child.pid, signal.SIGSTOP)  # hung: alive, answering nothing
    pending = asyncio.ensure_future(store.commit(StepWrite(session=session("r1"))))
    await asyncio.sleep(0.05)
    async with asyncio.timeout(30):
        await store.close()
    with pytest.raises(StoreError, match="did not answer"):
        await pending
    assert not child.is_alive()


async def test_a_write_missing_an_event_id_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="KeyError"):
        await store.commit(StepWrite(events=(("r1", {"type": "answer.recorded"}),)))


async def test_on_commit_is_called_after_each_batch(store: Store) -> None:
    calls: list[int] = []
    store.on_commit = lambda: calls.append(store.batches_committed)
    await store.commit(StepWrite(session=session("r1")))
    assert calls == [store.batches_committed]


async def test_close_commits_queued_writes_and_refuses_new_ones(store: Store) -> None:
    queued = asyncio.ensure_future(store.commit(StepWrite(session=session("r1"))))
    await asyncio.sleep(0)
    await store.close()
    await queued
    with pytest.raises(StoreError, match="closed"):
        await store.commit(StepWrite(session=session("r2", address="x")))
    with pytest.raises(StoreError, match="closed"):
        await store.session("r1")


# -- sessions, answers, de-duplication, suppressions, meta --------------------------------------


async def test_only_one_open_session_per_channel_and_address(store: Store) -> None:
    await store.commit(StepWrite(session=session("r1")))
    with pytest.raises(StoreError):
        await store.commit(StepWrite(session=session("r2")))
    await store.commit(StepWrite(session=session("r3", channel="whatsapp")))
    await store.commit(StepWrite(session=session("r1", status="completed")))
    await store.commit(StepWrite(session=session("r2")))
    row = await store.open_session("sms", "tel:+989120000001")
    assert row is not None and row.response_id == "r2"
    assert row.data == {"step": 0, "note": "سلام"}
    completed = await store.session("r1")
    assert completed is not None and completed.status == "completed"


async def test_reads(store: Store, clock: Clock) -> None:
    expires = T0 + timedelta(minutes=30)
    await store.commit(
        StepWrite(
            session=session("r1", expires_at=expires),
            answers=(answer("a2", "r1", "q1"), answer("a1", "r1", "q2")),
            inbound=("sms", "twilio", "SM1", {"reply": "ممنون"}),
            suppress=(("p1", "STOP"), ("p2", "لغو")),
        )
    )
    await store.commit(StepWrite(suppress=(("p3", "STOP"),), unsuppress=("p2",)))
    assert [a["id"] for a in await store.answers_for("r1")] == ["a2", "a1"]
    assert await store.inbound_result("sms", "twilio", "SM1") == {"reply": "ممنون"}
    assert await store.inbound_result("sms", "twilio", "SM2") is None
    assert [await store.is_suppressed(p) for p in ("p1", "p2", "p3")] == [True, False, True]
    row = await store.session("r1")
    assert row is not None and row.expires_at == expires
    assert await store.expired_sessions(expires - timedelta(seconds=1)) == []
    assert [s.response_id for s in await store.expired_sessions(expires)] == ["r1"]
    assert await store.meta_get("secret") is None
    assert await store.meta_set_if_absent("secret", "one") == "one"
    assert await store.meta_set_if_absent("secret", "two") == "one"
    assert await store.meta_get("secret") == "one"


async def test_a_response_lists_its_answers_and_events_even_from_a_step_without_it(
    store: Store, tmp_path: Path
) -> None:
    """A session lists the ids of its response's answers and events (migration 6). A write
    that does not carry the session still adds to its list; a respondent's own events and the
    erasure's are listed by no session."""
    await store.commit(
        StepWrite(
            session=session("r1"), answers=(answer("a1", "r1"),), events=(("r1", event("a1")),)
        )
    )
    later = (("r1", event("e2")), ("r_someone", event("e3")), ("erased:r_x", event("e4")))
    await store.commit(StepWrite(answers=(answer("a2", "r1"),), events=later))
    await store.commit(StepWrite(session=session("r1", status="completed")))
    assert sql(tmp_path / "db" / "seda.db", "SELECT events FROM sessions") == [("a1 a2 e2 ",)]
    assert [a["id"] for a in await store.answers_for("r1")] == ["a1", "a2"]
    assert await store.answers_for("r2") == []


async def test_duplicate_inbound_message_is_refused(store: Store) -> None:
    write = StepWrite(inbound=("sms", "twilio", "SM1", {}))
    await store.commit(write)
    with pytest.raises(DuplicateMessage):
        await store.commit(write)


async def test_a_duplicate_in_a_batch_fails_alone_and_commits_nothing_of_its_own(
    store: Store,
) -> None:
    await store.commit(StepWrite(inbound=("sms", "twilio", "SM1", {"first": True})))
    answer = {"id": "a-dup", "response_id": "r1", "question_id": "nps"}
    repeat = StepWrite(answers=(answer,), inbound=("sms", "twilio", "SM1", {"first": False}))
    fresh = StepWrite(inbound=("sms", "twilio", "SM2", {}))
    results = await asyncio.gather(
        store.commit(repeat), store.commit(fresh), return_exceptions=True
    )
    assert isinstance(results[0], DuplicateMessage) and results[1] is None
    assert await store.answers_for("r1") == []  # the repeat's answer was never committed
    assert await store.inbound_result("sms", "twilio", "SM1") == {"first": True}


# -- outbox -------------------------------------------------------------------------------------


async def test_events_become_one_row_per_matching_backend(store: Store) -> None:
    await store.commit(
        StepWrite(events=(("r1", event("e1")), ("r1", event("e2", "response.completed"))))
    )
    rows = await store.list_outbox()
    assert [(r.event_id, r.backend) for r in rows] == [
        ("e1", "crm"),
        ("e1", "answers_file"),
        ("e2", "crm"),
    ]
    assert rows[0].event == event("e1") and rows[0].status == "pending"


async def test_claim_ready_returns_only_the_due_head_of_each_order_key(
    store: Store, clock: Clock
) -> None:
    events = [("r1", "e1"), ("r2", "e2"), ("r1", "e3"), ("r3", "e4"), ("r2", "e5"), ("r1", "e6")]
    await store.commit(StepWrite(events=tuple((key, event(eid)) for key, eid in events)))
    heads = await store.claim_ready("crm", clock(), limit=10)
    assert [h.event_id for h in heads] == ["e1", "e2", "e4"]
    assert [h.event_id for h in await store.claim_ready("crm", clock(), limit=2)] == ["e1", "e2"]

    later = clock() + timedelta(seconds=30)
    await store.mark_retry(heads[0].seq, later, "HTTP 503")
    await store.mark_delivered([heads[1].seq])
    assert [h.event_id for h in await store.claim_ready("crm", clock(), limit=10)] == ["e4", "e5"]
    assert await store.next_due("crm", after=clock()) == later

    clock.now = later
    assert [h.event_id for h in await store.claim_ready("crm", clock(), limit=10)] == [
        "e1",
        "e4",
        "e5",
    ]
    await store.mark_dead(heads[0].seq, "HTTP 400")
    assert [h.event_id for h in await store.claim_ready("crm", clock(), limit=10)] == [
        "e3",
        "e4",
        "e5",
    ]
    assert await store.dead_count() == {"crm": 1, "answers_file": 0}


async def test_outbox_stats_retry_dead_and_replay(store: Store, clock: Clock) -> None:
    for response_id in ("r1", "r2"):  # replay by response finds the events its session lists
        await store.commit(StepWrite(session=session(response_id, address=response_id)))
    await store.commit(StepWrite(events=(("r1", event("e1")), ("r2", event("e2")))))
    rows = await store.list_outbox(backend="crm")
    clock.now = T0 + timedelta(seconds=90)
    assert (await store.outbox_stats(clock()))["crm"] == (2, 90.0)
    await store.mark_dead(rows[0].seq, "HTTP 400")
    await store.mark_delivered([rows[1].seq])
    assert (await store.outbox_stats(clock()))["crm"] == (0, 0.0)

    assert await store.retry_dead(seqs=[rows[1].seq]) == 0
    assert await store.retry_dead(backend="crm") == 1
    retried = (await store.list_outbox(status="pending", backend="crm"))[0]
    assert (retried.event_id, retried.attempts, retried.queued_at) == ("e1", 0, clock())

    assert await store.replay("crm", since=T0 + timedelta(hours=1)) == 0
    assert await store.replay("crm", response_id="r1") == 0
    assert await store.replay("crm", since=T0, response_id="r2") == 1
    assert [r.event_id for r in await store.list_outbox(status="pending", backend="crm")] == [
        "e1",
        "e2",
    ]


async def test_backends_can_be_disabled_and_enabled(store: Store) -> None:
    assert await store.disabled_backends() == {}
    await store.disable_backend("crm", "HTTP 410 Gone")
    assert await store.disabled_backends() == {"crm": "HTTP 410 Gone"}
    assert await store.enable_backend("crm") is True
    assert await store.enable_backend("crm") is False
    assert await store.disabled_backends() == {}


async def test_requeued_rows_take_their_place_at_the_head_again(store: Store, clock: Clock) -> None:
    await store.commit(StepWrite(session=session("r1", address="r1")))
    await store.commit(StepWrite(events=tuple(("r1", event(f"e{n}")) for n in range(4))))
    e0, e1, _, _ = await store.list_outbox(backend="crm")
    await store.mark_delivered([e0.seq])
    await store.mark_dead(e1.seq, "HTTP 400")
    assert [h.event_id for h in await store.claim_ready("crm", clock(), 10)] == ["e2"]
    assert await store.retry_dead(seqs=[e1.seq]) == 1
    assert [h.event_id for h in await store.claim_ready("crm", clock(), 10)] == ["e1"]
    assert await store.replay("crm", response_id="r1") == 1
    assert [h.event_id for h in await store.claim_ready("crm", clock(), 10)] == ["e0"]
    for expected in ("e0", "e1", "e2", "e3"):
        (head,) = await store.claim_ready("crm", clock(), 10)
        assert head.event_id == expected
        await store.mark_delivered([head.seq])
    assert await store.claim_ready("crm", clock(), 10) == []


# -- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        T0,
        datetime(2024, 5, 1, 9, 30, 0, 5, tzinfo=UTC),
        datetime(2024, 5, 1, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3, minutes=30))),
    ],
)
async def test_a_session_is_stored_exactly_as_its_json(store: Store, moment: datetime) -> None:
    """The hot path hands the encoder datetimes (to_row); what lands must equal to_json()."""
    from gateway.session import Session
    from gateway.store_schema import dumps

    live = Session(
        response_id="0190b4f4-0000-7000-8000-000000000001", survey_id="post_call_nps",
        survey_version=1, language="fa", channel="sms", provider="twilio",
        address="tel:+989120000001", respondent_id="r_abc", started_at=moment,
        updated_at=moment + timedelta(seconds=1), expires_at=moment + timedelta(days=1),
        question_id="nps", context={"agent": "۱۲"}, answers={"nps": 9},
    )  # fmt: skip
    assert dumps(live.to_row()) == dumps(live.to_json())
    row = session(live.response_id, data=live.to_row())
    await store.commit(StepWrite(session=row))
    stored = await store.session(live.response_id)
    assert stored is not None and stored.data == live.to_json()
    assert Session.from_json(stored.data) == live


async def test_delivery_marks_share_a_steps_commit_and_never_wait_long(
    tmp_path: Path, store: Store
) -> None:
    """A mark of delivered rows waits a moment for company; alone it still commits soon."""
    await store.commit(StepWrite(events=(("r1", event("e1")),)))
    head = (await store.claim_ready("crm", T0, 10))[0]
    before = store.batches_committed
    mark = asyncio.create_task(store.mark_delivered([head.seq]))
    await asyncio.sleep(0.005)  # the writer has the mark alone and waits (LAZY_WAIT is 20 ms)
    await store.commit(StepWrite(session=session("r2")))  # a step arrives: one transaction
    await mark
    assert store.batches_committed == before + 1
    assert [r.seq for r in await store.claim_ready("crm", T0, 10)] == []

    await store.commit(StepWrite(events=(("r3", event("e3")),)))
    head = (await store.claim_ready("crm", T0, 10))[0]
    await asyncio.wait_for(store.mark_delivered([head.seq]), 1)  # alone: committed anyway
    status = sql(tmp_path / "db" / "seda.db", f"SELECT status FROM outbox WHERE seq = {head.seq}")
    assert status == [("delivered",)]


async def test_one_head_per_order_key_when_a_batch_adds_several_rows(
    tmp_path: Path, store: Store
) -> None:
    """Heads are worked out for the whole batch: one per key, after what is already pending."""
    await store.commit(StepWrite(events=(("r1", event("a1")),)))
    writes = [
        StepWrite(events=(("r1", event("a2")), ("r2", event("b1")))),
        StepWrite(events=(("r2", event("b2")), ("r3", event("c1")))),
    ]
    await asyncio.gather(*(store.commit(w) for w in writes))  # one group commit
    db = tmp_path / "db" / "seda.db"
    heads = sql(db, "SELECT event_id FROM outbox WHERE backend = 'crm' AND head = 1 ORDER BY seq")
    assert heads == [("a1",), ("b1",), ("c1",)]
    first = {r.event_id: r.seq for r in await store.claim_ready("crm", T0, 10)}
    await store.mark_delivered([first["a1"], first["b1"]])
    heads = sql(db, "SELECT event_id FROM outbox WHERE backend = 'crm' AND head = 1 ORDER BY seq")
    assert heads == [("a2",), ("b2",), ("c1",)]


def test_group_inserts_use_a_dozen_statements_whatever_the_group_sizes() -> None:
    """Every row count of a multi-row INSERT is a prepared statement of its own in the
    connection's cache (128 by default): group commits of 1 to 300 steps must not make 300 of
    them (the cache churns and holds tens of MB), and every row must still go in, in order."""
    from gateway.store_schema import insert_many

    class Recording:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn, self.statements = conn, set()

        def execute(self, query: str, values: list[object]) -> sqlite3.Cursor:
            self.statements.add(query)
            return self.conn.execute(query, values)

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE answers (id, response_id, question_id, data, created_at)")
    recording = Recording(conn)
    for size in range(1, 301):
        rows = [(f"{size}-{i}", "r", "q", "{}", float(i)) for i in range(size)]
        insert_many(recording, "answers", rows)  # type: ignore[arg-type]
        stored = conn.execute(
            "SELECT id FROM answers WHERE id LIKE ? ORDER BY rowid", (f"{size}-%",)
        ).fetchall()
        assert [row[0] for row in stored] == [row[0] for row in rows]
    assert len(recording.statements) <= 9  # 1, 2, 4, ..., 256 rows
