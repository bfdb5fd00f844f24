"""Sessions, answers and the outbox in SQLite, written by one task that group-commits steps."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway import jsoncodec
from gateway.ids import Clock
from gateway.logs import fields
from gateway.store_deliveries import Deliveries
from gateway.store_retention import Retention
from gateway.store_schema import (
    OUTBOX_COLUMNS,
    PROMOTE_NEXT,
    RESET_HEADS,
    OutboxRow,
    SessionRow,
    StepWrite,
    StoreError,
    connect,
    from_ts,
    listed,
    migrate,
    open_writer,
    outbox_row,
    session_row,
    to_ts,
    where_equal,
)
from gateway.store_writer import (
    BATCH_CAP,
    LAZY_WAIT,
    WriterProcess,
    commit_writes,
    lazy,
    prepare,
)

__all__ = ["DuplicateMessage", "OutboxRow", "SessionRow", "StepWrite", "Store", "StoreError"]


# The database holds personal data (addresses, answers): a new one, its folder and (as SQLite
# gives them the database's mode) its -wal and -shm files are for their owner only.
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def _private(path: Path) -> None:
    """Create the database file for its owner only, or warn if an existing one is not."""
    if str(path) == ":memory:":
        return
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "the database is readable by other users: it holds personal data",
                extra=fields(path=str(path), mode=oct(mode), fix=f"chmod 600 {path}*"),
            )


class DuplicateMessage(StoreError):
    """The write's provider message id is already stored: nothing of the write was committed."""


log = logging.getLogger(__name__)

_Pending = tuple[StepWrite, "asyncio.Future[None]"]
_T = TypeVar("_T")


class Store:
    """The durable state of the gateway; create it with `await Store.open(...)`."""

    def __init__(
        self,
        writer: sqlite3.Connection,
        reader: aiosqlite.Connection,
        backends: Mapping[str, frozenset[str] | None],
        clock: Clock,
        process: WriterProcess | None = None,
    ) -> None:
        # Group commits go to the writer process when there is one (see gateway/store_writer.py).
        self._process = process
        if process is not None:
            process.on_committed = self._committed
        self.folder: Path | None = None  # the database's folder, where other state may live
        # Every other write transaction runs whole on one thread, in one hop from the event loop:
        # a transaction made of several awaits waits behind the loop's other work at each one
        # (measured: 4.5 ms per group commit that way, under load).
        self._writer = writer
        self._writer_thread = concurrent.futures.ThreadPoolExecutor(1, "seda-store-writer")
        self._reader = reader
        self._backends = dict(backends)
        self._clock = clock
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._closed = False
        self.on_commit: Callable[[], None] | None = None
        self.batches_committed = 0
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="store-writer")
        self._task.add_done_callback(lambda _: self._fail_queued("the store writer stopped"))
        # Receipts of the messages Seda's channels send (gateway/store_deliveries.py).
        self.deliveries = Deliveries(self._read, self._change, self._change_with)
        # What is deleted after its time (gateway/store_retention.py).
        self.retention = Retention(self._read, self._change_with)

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        backends: Mapping[str, frozenset[str] | None],
        clock: Clock,
        writer_process: bool = False,
    ) -> Store:
        """Open (creating if needed) the database, check durability settings and migrate it.
        With `writer_process`, group commits run in a child process (what `seda run` uses)."""
        _private(path)
        setup = await connect(path, writer=True)
        try:
            await migrate(setup)
        finally:
            await setup.close()
        writer = await asyncio.to_thread(open_writer, path)
        process = reader = None
        try:
            reader = await connect(path, writer=False)
            if writer_process:
                process = await WriterProcess.start(path, backends)
        except BaseException:
            writer.close()
            if reader is not None:
                await reader.close()
            raise
        store = cls(writer, reader, backends, clock, process)
        store.folder = path.parent
        return store

    @property
    def clock(self) -> Clock:
        """The clock the store stamps rows with."""
        return self._clock

    @property
    def backend_names(self) -> tuple[str, ...]:
        """The configured backends, in configuration order."""
        return tuple(self._backends)

    async def close(self) -> None:
        """Commit what is already queued, stop the writer and close both connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        try:
            await asyncio.wait({self._task})
        finally:
            self._fail_queued("store closed before the write was committed")
            if self._process is not None:
                await self._process.close()
            await self._in_writer(lambda conn: conn.close())
            self._writer_thread.shutdown(wait=True)
            await self._reader.close()

    # -- group commit -------------------------------------------------------------------------

    async def commit(self, write: StepWrite) -> None:
        """Return once `write` is committed (raise StoreError if it was not)."""
        if self._closed or self._task.done():
            raise StoreError("store is closed")
        if self._process is not None:  # the writer process forms the groups itself
            try:
                await self._process.commit(write, self._clock().timestamp())
            except Exception as exc:
                raise _store_error(exc) from exc
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((write, done))
        await done

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            if item is None:
                break
            batch = [item]
            stop = self._drain(batch)
            # Marks of delivered outbox rows need no fsync of their own (a lost mark only means
            # a repeat delivery, which backends de-duplicate): let them wait a moment for a
            # step's commit to share. A step that arrives ends the wait at once.
            while not stop and all(lazy(write) for write, _ in batch):
                try:
                    async with asyncio.timeout(LAZY_WAIT):
                        item = await self._queue.get()
                except TimeoutError:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                stop = self._drain(batch)
            try:
                await self._run_batch(batch)
            except Exception as exc:  # never let the writer die: fail this batch, go on
                log.exception("store writer error")
                for _, done in batch:
                    _resolve(done, StoreError(f"store writer error: {type(exc).__name__}"))

    def _drain(self, batch: list[_Pending]) -> bool:
        """Add what is queued (up to the cap) to `batch`; True if the stop marker came."""
        while len(batch) < BATCH_CAP:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    async def _run_batch(self, batch: list[_Pending]) -> None:
        errors = [await self._transaction([write for write, _ in batch])] * len(batch)
        if errors[0] is not None and len(batch) > 1:
            # Find the bad write(s): each write alone, so only their callers see an error.
            errors = [await self._transaction([write]) for write, _ in batch]
        for (_, done), error in zip(batch, errors, strict=True):
            _resolve(done, error)
        if any(error is None for error in errors):
            self._notify()

    async def _transaction(self, writes: Sequence[StepWrite]) -> StoreError | None:
        """Commit `writes` in one transaction; return the error instead of raising it."""
        now = self._clock().timestamp()
        try:
            prepared = [prepare(write) for write in writes]
            await self._in_writer(lambda conn: commit_writes(conn, prepared, self._backends, now))
        except Exception as exc:
            return _store_error(exc)
        self.batches_committed += 1
        return None

    async def _atomic(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in one IMMEDIATE transaction on the writer thread."""

        def transaction(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self._in_writer(transaction)

    async def _in_writer(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer_thread, work, self._writer)

    def _committed(self, transactions: int) -> None:
        self.batches_committed += transactions
        self._notify()

    def _notify(self) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("on_commit callback failed")

    def _fail_queued(self, reason: str) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                _resolve(item[1], StoreError(reason))

    # -- reads --------------------------------------------------------------------------------

    async def open_session(self, channel: str, address: str) -> SessionRow | None:
        """The open session of this address on this channel, if any."""
        rows = await self._read(
            "SELECT * FROM sessions WHERE channel = ? AND address = ? AND status = 'open'",
            (channel, address),
        )
        return session_row(rows[0]) if rows else None

    async def session(self, response_id: str) -> SessionRow | None:
        """A session by its response id, whatever its status."""
        rows = await self._read("SELECT * FROM sessions WHERE response_id = ?", (response_id,))
        return session_row(rows[0]) if rows else None

    async def answers_for(self, response_id: str) -> list[dict[str, Any]]:
        """The answers of one response, in the order they were stored."""
        ids = await self._listed(response_id)
        rows = await self._read(
            f"SELECT data FROM answers WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY rowid",
            ids,
        )
        return [jsoncodec.loads(row["data"]) for row in rows]

    async def _listed(self, response_id: str) -> list[str]:
        """The ids of a response's answers and events, as its session lists them."""
        rows = await self._read("SELECT events FROM sessions WHERE response_id = ?", (response_id,))
        return listed(rows[0]["events"]) if rows else []

    async def inbound_result(
        self, channel: str, provider: str, message_id: str
    ) -> dict[str, Any] | None:
        """What an already-handled provider message produced, or None if it is new."""
        rows = await self._read(
            "SELECT result FROM inbound_ids WHERE channel = ? AND provider = ? AND message_id = ?",
            (channel, provider, message_id),
        )
        return jsoncodec.loads(rows[0]["result"]) if rows else None

    async def conversation(
        self, channel: str, address: str, provider: str, message_id: str | None
    ) -> tuple[dict[str, Any] | None, SessionRow | None]:
        """In one read: what this message already produced (if handled), and the open session."""
        rows = await self._read(
            "SELECT (SELECT result FROM inbound_ids WHERE channel = ? AND provider = ?"
            " AND message_id = ?) AS seen, s.* FROM (SELECT 1) LEFT JOIN sessions AS s"
            " ON s.channel = ? AND s.address = ? AND s.status = 'open'",
            (channel, provider, message_id, channel, address),
        )
        row = rows[0]
        seen = jsoncodec.loads(row["seen"]) if row["seen"] is not None else None
        return seen, session_row(row) if row["response_id"] is not None else None

    async def is_suppressed(self, *respondent_ids: str) -> bool:
        """Whether this respondent opted out (under any of these pseudonyms)."""
        marks = ", ".join("?" * len(respondent_ids))
        rows = await self._read(
            f"SELECT 1 FROM suppressions WHERE respondent_id IN ({marks}) LIMIT 1", respondent_ids
        )
        return bool(rows)

    async def meta_get(self, key: str) -> str | None:
        """A stored setting."""
        rows = await self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    async def meta_set_if_absent(self, key: str, value: str) -> str:
        """Store `value` unless the key has one already; return the value that is stored."""
        if self._closed:
            raise StoreError("store is closed")

        def work(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, value),
            )
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return str(row["value"])

        return await self._atomic(work)

    async def expired_sessions(self, now: datetime, limit: int = 100) -> list[SessionRow]:
        """Open sessions whose expiry time has passed, oldest first."""
        rows = await self._read(
            "SELECT * FROM sessions WHERE status = 'open' AND expires_at IS NOT NULL"
            " AND expires_at <= ? ORDER BY expires_at LIMIT ?",
            (to_ts(now), limit),
        )
        return [session_row(row) for row in rows]

    async def reminders_due(self, now: datetime, limit: int = 100) -> list[SessionRow]:
        """Open sessions whose reminder time has passed, oldest first."""
        rows = await self._read(
            "SELECT * FROM sessions WHERE status = 'open' AND remind_at IS NOT NULL"
            " AND remind_at <= ? ORDER BY remind_at LIMIT ?",
            (to_ts(now), limit),
        )
        return [session_row(row) for row in rows]

    async def outbox_stats(self, now: datetime) -> dict[str, tuple[int, float]]:
        """Per backend: pending rows and the age in seconds of the oldest one."""
        stats = {name: (0, 0.0) for name in self._backends}
        rows = await self._read(
            "SELECT backend, COUNT(*) AS n, MIN(queued_at) AS oldest FROM outbox"
            " WHERE status = 'pending' GROUP BY backend"
        )
        for row in rows:
            stats[row["backend"]] = (int(row["n"]), max(0.0, to_ts(now) - float(row["oldest"])))
        return stats

    async def dead_count(self) -> dict[str, int]:
        """Per backend: rows in the dead letter."""
        counts = dict.fromkeys(self._backends, 0)
        rows = await self._read(
            "SELECT backend, COUNT(*) AS n FROM outbox WHERE status = 'dead' GROUP BY backend"
        )
        counts.update({row["backend"]: int(row["n"]) for row in rows})
        return counts

    # -- outbox -------------------------------------------------------------------------------

    async def claim_ready(self, backend: str, now: datetime, limit: int) -> list[OutboxRow]:
        """The due head (lowest pending seq) of each order key, oldest first."""
        rows = await self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE backend = ? AND status = 'pending'"
            " AND head = 1 AND next_attempt_at <= ? ORDER BY seq LIMIT ?",
            (backend, to_ts(now), limit),
        )
        return [outbox_row(row) for row in rows]

    async def next_due(self, backend: str, after: datetime) -> datetime | None:
        """The earliest retry time after `after` among the heads of this backend."""
        rows = await self._read(
            "SELECT MIN(next_attempt_at) AS due FROM outbox WHERE backend = ?"
            " AND status = 'pending' AND head = 1 AND next_attempt_at > ?",
            (backend, to_ts(after)),
        )
        return from_ts(rows[0]["due"]) if rows else None

    async def mark_delivered(self, seqs: Sequence[int]) -> None:
        """Record successful deliveries (in the next group commit: no transaction of its own)."""
        if seqs:
            await self.commit(StepWrite(delivered=tuple(seqs)))

    async def mark_retry(self, seq: int, next_attempt_at: datetime, error: str) -> None:
        """Record a failed attempt and when to try again."""
        await self._change(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE seq = ? AND status = 'pending'",
            [(to_ts(next_attempt_at), error, seq)],
        )

    async def mark_dead(self, seq: int, error: str) -> None:
        """Move a row to the dead letter."""
        await self._finish(
            "UPDATE outbox SET status = 'dead', head = 0, attempts = attempts + 1,"
            " last_error = ? WHERE seq = ? AND status = 'pending'",
            [(error, seq)],
        )

    async def disable_backend(self, name: str, reason: str) -> None:
        """Stop delivering to a backend until an operator enables it again."""
        await self._change(
            "INSERT INTO backend_state (name, disabled_at, reason) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET disabled_at = excluded.disabled_at,"
            " reason = excluded.reason",
            [(name, to_ts(self._clock()), reason)],
        )

    async def enable_backend(self, name: str) -> bool:
        """Resume delivery to a backend now; False if it was not disabled. Its pending events
        begin a new delivery cycle: the time it was disabled does not count to the horizon."""
        now = to_ts(self._clock())

        def work(conn: sqlite3.Connection) -> bool:
            if conn.execute("DELETE FROM backend_state WHERE name = ?", (name,)).rowcount == 0:
                return False
            conn.execute(
                "UPDATE outbox SET attempts = 0, queued_at = ?, next_attempt_at = ?"
                " WHERE backend = ? AND status = 'pending'",
                (now, now, name),
            )
            return True

        return await self._change_with(work)

    async def disabled_backends(self) -> dict[str, str]:
        """Disabled backends and why."""
        rows = await self._read("SELECT name, reason FROM backend_state ORDER BY name")
        return {row["name"]: row["reason"] for row in rows}

    async def list_outbox(
        self, status: str | None = None, backend: str | None = None, limit: int = 100
    ) -> list[OutboxRow]:
        """Outbox rows, oldest first, optionally of one status and one backend."""
        where, params = where_equal(status=status, backend=backend)
        rows = await self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox{where} ORDER BY seq LIMIT ?", (*params, limit)
        )
        return [outbox_row(row) for row in rows]

    async def retry_dead(
        self, backend: str | None = None, seqs: Sequence[int] | None = None
    ) -> int:
        """Put dead letters back in the queue now; return how many."""
        where, params = where_equal(status="dead", backend=backend)
        if seqs is not None:
            where += f" AND seq IN ({', '.join('?' * len(seqs))})" if seqs else " AND 0"
            params = (*params, *seqs)
        return await self._requeue(where, params)

    async def replay(
        self,
        backend: str,
        since: datetime | None = None,
        response_id: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Send delivered events again (same event ids, so receivers de-duplicate)."""
        where, params = where_equal(status="delivered", backend=backend)
        if response_id is not None:
            # One response's rows, by the event ids its session lists: the unary + keeps the
            # planner off the status index, which would walk every delivered row of the backend.
            ids = await self._listed(response_id)
            where = (
                " WHERE +status = 'delivered' AND backend = ?"
                f" AND event_id IN ({', '.join('?' * len(ids))})"
            )
            params = (backend, *ids)
        if since is not None:
            where, params = f"{where} AND created_at >= ?", (*params, to_ts(since))
        if until is not None:
            where, params = f"{where} AND created_at < ?", (*params, to_ts(until))
        return await self._requeue(where, params)

    async def _finish(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Take rows out of pending (`sql` ends in `seq = ?`) and promote the next heads."""

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, rows)
            conn.executemany(PROMOTE_NEXT, [(row[-1],) for row in rows])

        await self._change_with(work)

    async def _requeue(self, where: str, params: tuple[Any, ...]) -> int:
        now = to_ts(self._clock())

        def work(conn: sqlite3.Connection) -> int:
            sql = f"SELECT DISTINCT backend, order_key FROM outbox{where}"
            keys = [tuple(row) for row in conn.execute(sql, params).fetchall()]
            cursor = conn.execute(
                "UPDATE outbox SET status = 'pending', head = 0, attempts = 0,"
                f" next_attempt_at = ?, queued_at = ?, delivered_at = NULL{where}",
                (now, now, *params),
            )
            conn.executemany(RESET_HEADS, keys)
            return cursor.rowcount

        return await self._change_with(work)

    # -- helpers ------------------------------------------------------------------------------

    async def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        if self._closed:
            raise StoreError("store is closed")
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def _change(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """Run one statement over `rows` in its own transaction; return the rows changed."""
        return await self._change_with(lambda conn: conn.executemany(sql, rows).rowcount)

    async def _change_with(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StoreError("store is closed")
        return await self._atomic(work)


def _resolve(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the caller went away; its write was still handled
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError) and "inbound_ids" in str(exc):
        return DuplicateMessage("this provider message was already handled")
    error = StoreError(f"write not committed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
