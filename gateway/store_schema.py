"""The store's data: row types, the SQLite schema and its migrations, durability checks."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import aiosqlite

from gateway import jsoncodec
from gateway.logs import fields

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
OUTBOX_COLUMNS = (
    "seq, event_id, backend, order_key, event_type, payload, status, attempts, "
    "next_attempt_at, created_at, queued_at, last_error, delivered_at"
)

# What a group commit writes, in this order: (statement before VALUES, after it, columns). Each
# table takes the whole batch in one multi-row INSERT: executemany releases and retakes the GIL
# around every row, and on a busy event loop each retake waited in line.
STEP_INSERTS: dict[str, tuple[str, str, int]] = {
    "sessions": (
        "INSERT INTO sessions (response_id, channel, address, survey_id, status, data,"
        " expires_at, remind_at, events, updated_at)",
        " ON CONFLICT (response_id) DO UPDATE SET channel = excluded.channel,"
        " address = excluded.address, survey_id = excluded.survey_id, status = excluded.status,"
        " data = excluded.data, updated_at = excluded.updated_at,"
        " expires_at = excluded.expires_at, remind_at = excluded.remind_at,"
        " events = sessions.events || excluded.events",
        10,
    ),
    "answers": ("INSERT INTO answers (id, response_id, question_id, data, created_at)", "", 5),
    "inbound_ids": (
        "INSERT INTO inbound_ids (channel, provider, message_id, result, created_at)",
        "",
        5,
    ),
    # `head` is worked out before the insert: see Store._apply.
    "outbox": (
        "INSERT INTO outbox (event_id, backend, order_key, event_type, payload,"
        " next_attempt_at, created_at, queued_at, head)",
        "",
        9,
    ),
}
SUPPRESS = (
    "INSERT INTO suppressions (respondent_id, reason, created_at) VALUES (?, ?, ?)"
    " ON CONFLICT (respondent_id) DO NOTHING"
)
UNSUPPRESS = "DELETE FROM suppressions WHERE respondent_id = ?"
LIST_MORE = "UPDATE sessions SET events = events || ?2 WHERE response_id = ?1"
# Most steps change only a session's data: this leaves every column the indexes use out of its
# SET (SQLite rewrites an index entry whenever its columns are assigned, even to the same value:
# a random page of sessions_open_address per reply). It changes nothing when any of them differs
# or the row is new; the upsert (STEP_INSERTS) then writes the row. Parameters as STEP_INSERTS.
SESSION_STEP = (
    "UPDATE sessions SET data = ?6, events = events || ?9, updated_at = ?10"
    " WHERE response_id = ?1 AND channel = ?2 AND address = ?3 AND survey_id = ?4"
    " AND status = ?5 AND expires_at IS ?7 AND remind_at IS ?8"
)
MAX_VARIABLES = 30_000  # bound parameters per statement (SQLite allows 32,766 at least)


def insert_many(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Multi-row INSERTs of `rows` into a STEP_INSERTS table, in order, in chunks of a power of
    two rows (25 rows: 16, 8, 1). Each row count is a statement of its own in the connection's
    cache of prepared statements (128 by default): a statement for every group size that ever
    occurred (1 to thousands) would churn it, preparing again the commonest ones, and hold tens
    of MB of large ones; powers of two make a dozen statements per table."""
    before, after, width = STEP_INSERTS[table]
    one = "(" + ",".join("?" * width) + ")"
    largest = 1 << ((MAX_VARIABLES // width).bit_length() - 1)
    start = 0
    while start < len(rows):
        size = min(largest, 1 << ((len(rows) - start).bit_length() - 1))
        part = rows[start : start + size]
        values = ",".join([one] * size)
        conn.execute(f"{before} VALUES {values}{after}", [v for row in part for v in row])
        start += size


def pending_keys(conn: sqlite3.Connection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (backend, order_key) pairs have a pending outbox row now (one statement)."""
    found: set[tuple[str, str]] = set()
    listed = sorted(keys)
    chunk = MAX_VARIABLES // 2
    for start in range(0, len(listed), chunk):
        part = listed[start : start + chunk]
        values = ",".join(["(?,?)"] * len(part))
        query = (
            f"WITH k(b, o) AS (VALUES {values}) SELECT b, o FROM k WHERE EXISTS"
            " (SELECT 1 FROM outbox WHERE backend = k.b AND order_key = k.o"
            " AND status = 'pending')"
        )
        rows = conn.execute(query, [v for key in part for v in key]).fetchall()
        found.update((str(row[0]), str(row[1])) for row in rows)  # rows may be sqlite3.Row
    return found


def mark_rows_delivered(conn: sqlite3.Connection, seqs: list[int], now: float) -> None:
    """Delivered rows leave pending; the next pending row of each of their keys becomes head."""
    for start in range(0, len(seqs), MAX_VARIABLES - 1):
        part = seqs[start : start + MAX_VARIABLES - 1]
        marks = ",".join("?" * len(part))
        conn.execute(
            "UPDATE outbox SET status = 'delivered', head = 0, attempts = attempts + 1,"
            f" delivered_at = ?, last_error = NULL WHERE status = 'pending' AND seq IN ({marks})",
            [now, *part],
        )
        conn.execute(
            "UPDATE outbox SET head = 1 WHERE seq IN (SELECT (SELECT MIN(p.seq) FROM outbox AS p"
            " WHERE p.backend = x.backend AND p.order_key = x.order_key"
            f" AND p.status = 'pending') FROM outbox AS x WHERE x.seq IN ({marks}))",
            part,
        )


# After row ? left pending: the next pending row of its order key becomes the head.
PROMOTE_NEXT = (
    "UPDATE outbox SET head = 1 WHERE seq = (SELECT MIN(p.seq) FROM outbox AS p, outbox AS x"
    " WHERE x.seq = ?1 AND p.backend = x.backend AND p.order_key = x.order_key"
    " AND p.status = 'pending')"
)
# After rows re-entered pending: recompute the head of order key (?1 backend, ?2 key).
RESET_HEADS = (
    "UPDATE outbox SET head = (seq = (SELECT MIN(h.seq) FROM outbox AS h WHERE h.backend = ?1"
    " AND h.order_key = ?2 AND h.status = 'pending'))"
    " WHERE backend = ?1 AND order_key = ?2 AND status = 'pending'"
)


# Delivery receipts (the deliveries table): a row's status moves forward only, and a final one
# stays, whatever order a provider's receipts come in.
DELIVERY_FINAL = frozenset({"delivered", "failed", "undelivered"})
_DELIVERY_RANK = {"unknown": 0, "queued": 1, "sent": 2}


def delivery_moves(old: str, new: str) -> bool:
    """Whether a receipt saying `new` changes a deliveries row whose status is `old`."""
    if old in DELIVERY_FINAL:
        return False
    return new in DELIVERY_FINAL or _DELIVERY_RANK.get(new, 0) > _DELIVERY_RANK.get(old, 0)


class StoreError(Exception):
    """The store could not do what was asked; the message says why (never with personal data)."""


@dataclass(frozen=True)
class SessionRow:
    """One survey run for one address, as stored."""

    response_id: str
    channel: str
    address: str
    survey_id: str
    status: str  # open | completed | abandoned
    data: dict[str, Any]
    expires_at: datetime | None
    remind_at: datetime | None = None  # when the one reminder is due (sender channels only)


@dataclass(frozen=True)
class StepWrite:
    """Everything one step changes, committed atomically."""

    session: SessionRow | None = None  # upsert by response_id
    answers: tuple[dict[str, Any], ...] = ()  # answer JSON with "id", "response_id", "question_id"
    events: tuple[tuple[str, dict[str, Any]], ...] = ()  # (order_key, event JSON with id, type)
    inbound: tuple[str, str, str, dict[str, Any]] | None = None  # channel, provider, id, result
    suppress: tuple[tuple[str, str], ...] = ()  # (respondent_id, reason)
    unsuppress: tuple[str, ...] = ()
    delivered: tuple[int, ...] = ()  # outbox seqs the forwarder delivered (share the commit)


@dataclass(frozen=True)
class OutboxRow:
    """One event waiting for (or done with) one backend."""

    seq: int
    event_id: str
    backend: str
    order_key: str
    event_type: str
    payload: str  # the event envelope as JSON text, exactly as committed
    status: str  # pending | delivered | dead
    attempts: int  # in the current delivery cycle (reset by retry and replay)
    next_attempt_at: datetime
    created_at: datetime
    queued_at: datetime  # when the current delivery cycle began; the retry horizon counts from it
    last_error: str | None
    delivered_at: datetime | None

    @cached_property
    def event(self) -> dict[str, Any]:
        """The event envelope, decoded (only when a backend needs it as a dict)."""
        decoded: dict[str, Any] = jsoncodec.loads(self.payload)
        return decoded


# One entry per schema version; entry i takes the database from user_version i to i + 1.
# Never edit a released entry: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE sessions (
        response_id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        address TEXT NOT NULL,
        survey_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'abandoned')),
        data TEXT NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL
    );
    CREATE UNIQUE INDEX sessions_open_address
        ON sessions (channel, address) WHERE status = 'open';
    CREATE INDEX sessions_open_expiry
        ON sessions (expires_at) WHERE status = 'open' AND expires_at IS NOT NULL;
    CREATE TABLE answers (
        id TEXT PRIMARY KEY,
        response_id TEXT NOT NULL,
        question_id TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX answers_response ON answers (response_id);
    CREATE TABLE inbound_ids (
        channel TEXT NOT NULL,
        provider TEXT NOT NULL,
        message_id TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (channel, provider, message_id)
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        order_key TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at REAL NOT NULL,
        queued_at REAL NOT NULL,
        last_error TEXT,
        delivered_at REAL,
        head INTEGER NOT NULL DEFAULT 0,  -- 1: the lowest pending seq of its (backend, order_key)
        UNIQUE (event_id, backend)
    );
    CREATE INDEX outbox_head ON outbox (backend, order_key, status, seq);
    CREATE INDEX outbox_ready
        ON outbox (backend, next_attempt_at) WHERE status = 'pending' AND head = 1;
    CREATE INDEX outbox_status ON outbox (status, backend, seq);
    CREATE TABLE suppressions (
        respondent_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE backend_state (
        name TEXT PRIMARY KEY,
        disabled_at REAL NOT NULL,
        reason TEXT NOT NULL
    );
    """,
    # 2: reminders (one per response, on channels where Seda sends the messages).
    """
    ALTER TABLE sessions ADD COLUMN remind_at REAL;
    CREATE INDEX sessions_open_remind
        ON sessions (remind_at) WHERE status = 'open' AND remind_at IS NOT NULL;
    """,
    # 3: delivery receipts of the messages Seda sends (one row per provider message id).
    """
    CREATE TABLE deliveries (
        channel TEXT NOT NULL,
        provider TEXT NOT NULL,
        message_id TEXT NOT NULL,
        line TEXT NOT NULL,
        response_id TEXT,
        event_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('queued', 'sent', 'delivered', 'failed', 'undelivered', 'unknown')),
        raw_status TEXT,
        error TEXT,
        sent_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (channel, provider, message_id)
    );
    CREATE INDEX deliveries_response ON deliveries (response_id);
    CREATE INDEX deliveries_open ON deliveries (channel, line, sent_at)
        WHERE status IN ('queued', 'sent');
    """,
    # 4: the head index holds pending rows only. Over every row it took a random leaf page at
    # insert and again when delivery changed the row's status, in every group commit; the
    # pending rows are few and their pages stay hot. Replay by response uses outbox_order,
    # which a status change does not touch. outbox_delivered finds what retention deletes (its
    # entries are added in delivery order, at its right edge).
    """
    DROP INDEX outbox_head;
    CREATE INDEX outbox_pending ON outbox (backend, order_key, seq) WHERE status = 'pending';
    CREATE INDEX outbox_order ON outbox (order_key);
    CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE status = 'delivered';
    """,
    # 5: finished responses by age, for retention (store_retention.py). An entry is added when
    # a response ends, near the index's right edge; open sessions are not in it.
    """
    CREATE INDEX sessions_finished ON sessions (updated_at) WHERE status <> 'open';
    """,
    # 6: a response's rows are found through its session, not through indexes by response.
    # answers_response and outbox_order took a random leaf page for every answer and event,
    # in every group commit (a quarter of the writer's work per reply). A session lists the ids
    # of its answers and events instead (`events`: each id followed by a space), and each step
    # rewrites its session anyway; the ids are then looked up by primary key (answers) and by
    # the (event_id, backend) key (outbox). What remains by order key is small: rows not yet
    # delivered (pending and dead, for retention) and the respondent's own events (erasure).
    """
    ALTER TABLE sessions ADD COLUMN events TEXT NOT NULL DEFAULT '';
    UPDATE sessions SET events = (
        SELECT COALESCE(group_concat(id || ' ', ''), '') FROM (
            SELECT id FROM answers WHERE response_id = sessions.response_id
            UNION SELECT event_id FROM outbox WHERE order_key = sessions.response_id
        )
    );
    DROP INDEX answers_response;
    DROP INDEX outbox_order;
    CREATE INDEX outbox_undelivered ON outbox (order_key) WHERE status <> 'delivered';
    CREATE INDEX outbox_respondent ON outbox (order_key) WHERE order_key GLOB 'r_*';
    """,
)

# Order keys of a respondent's own events (opt-out, opt-in) are its pseudonym, which
# router.Gateway.respondent makes as RESPONDENT_PREFIX + base32; response ids are UUIDs. Queries
# repeat the condition so that SQLite uses the partial index outbox_respondent (migration 6).
# The erasure's own event is keyed ERASED_PREFIX + pseudonym, so that the erasure keeps it.
RESPONDENT_PREFIX = "r_"
ERASED_PREFIX = "erased:"
RESPONDENT_KEYS = f"order_key GLOB '{RESPONDENT_PREFIX}*'"


def listed(events: str) -> list[str]:
    """The answer and event ids a session lists (its `events` column)."""
    return events.split()


SCHEMA_VERSION = len(MIGRATIONS)


def _settings(writer: bool) -> list[str]:
    wal = ["PRAGMA journal_mode = WAL"] if writer else []
    return [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", *wal, "PRAGMA synchronous = FULL",
            "PRAGMA foreign_keys = ON"]  # fmt: skip


async def configure(conn: aiosqlite.Connection, *, writer: bool) -> None:
    """Set WAL, synchronous=FULL and the busy timeout, and read them back."""
    for pragma in _settings(writer):
        await conn.execute(pragma)
    check_durability(await _pragma(conn, "journal_mode"), await _pragma(conn, "synchronous"))
    if not writer:
        await conn.execute("PRAGMA query_only = ON")


def open_writer(path: Path) -> sqlite3.Connection:
    """The plain connection the store's writer thread uses (autocommit, WAL, FULL, checked)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in _settings(writer=True):
            conn.execute(pragma)
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        check_durability(mode, conn.execute("PRAGMA synchronous").fetchone()[0])
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


def check_durability(mode: Any, sync: Any) -> None:
    """Refuse a database where commits would not be durable (not WAL, not synchronous=FULL)."""
    if str(mode).lower() != "wal":
        raise StoreError(
            f"SQLite journal_mode is {mode!r}, not 'wal': the database file must be on a local "
            "filesystem that supports WAL (not a network share, not in memory)"
        )
    if sync != 2:
        raise StoreError(
            f"SQLite synchronous is {sync!r}, not 2 (FULL): commits would not be durable"
        )


async def connect(path: Path, *, writer: bool) -> aiosqlite.Connection:
    """A configured connection (autocommit: the store issues BEGIN IMMEDIATE itself)."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await configure(conn, writer=writer)
    except BaseException:
        await conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION, one transaction per migration; return the version."""
    version = int(await _pragma(conn, "user_version"))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this Seda ({SCHEMA_VERSION}): "
            "upgrade Seda or restore a matching backup"
        )
    for number in range(version, SCHEMA_VERSION):
        version_sql = f"PRAGMA user_version = {number + 1};"
        script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]}\n{version_sql}\nCOMMIT;"
        started = time.monotonic()
        try:
            await conn.executescript(script)
        except Exception as exc:
            if conn.in_transaction:
                await conn.rollback()
            raise StoreError(f"schema migration {number + 1} failed: {exc}") from exc
        if version > 0:  # a new database is not news
            took = round(time.monotonic() - started, 1)
            log.info("schema migrated", extra=fields(version=number + 1, seconds=took))
    return SCHEMA_VERSION


async def _pragma(conn: aiosqlite.Connection, name: str) -> Any:
    rows = await conn.execute_fetchall(f"PRAGMA {name}")
    return next(iter(rows))[0]


dumps = jsoncodec.dumps  # compact JSON that keeps Persian and Arabic letters readable


def to_ts(moment: datetime) -> float:
    """An aware datetime as unix seconds."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the store keeps aware UTC times")
    return moment.timestamp()


def from_ts(value: float | None) -> datetime | None:
    """Unix seconds (or NULL) as an aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def session_row(row: sqlite3.Row) -> SessionRow:
    """A sessions row as a SessionRow."""
    return SessionRow(
        response_id=row["response_id"],
        channel=row["channel"],
        address=row["address"],
        survey_id=row["survey_id"],
        status=row["status"],
        data=jsoncodec.loads(row["data"]),
        expires_at=from_ts(row["expires_at"]),
        remind_at=from_ts(row["remind_at"]),
    )


def outbox_row(row: sqlite3.Row) -> OutboxRow:
    """An outbox row (selected with OUTBOX_COLUMNS) as an OutboxRow."""
    return OutboxRow(
        seq=row["seq"],
        event_id=row["event_id"],
        backend=row["backend"],
        order_key=row["order_key"],
        event_type=row["event_type"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=datetime.fromtimestamp(row["next_attempt_at"], UTC),
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        queued_at=datetime.fromtimestamp(row["queued_at"], UTC),
        last_error=row["last_error"],
        delivered_at=from_ts(row["delivered_at"]),
    )


def where_equal(**columns: str | None) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause (or nothing) matching the given columns; None means any value."""
    used = {name: value for name, value in columns.items() if value is not None}
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(f"{name} = ?" for name in used), tuple(used.values())
