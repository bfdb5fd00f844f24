"""The write side of the store: what a group commit writes, and the process that commits it.

`apply_writes` turns a batch of step writes into a few multi-row statements. `WriterProcess`
runs it in a child process that owns one SQLite connection. With the commits in a thread of
the server's own process, every statement and the COMMIT had to win the GIL back from a busy
event loop (measured: 21 ms per group commit of 25 steps, of which about 11 ms was CPU and
fsync). The parent sends each step as soon as it is submitted, its JSON already encoded; the
child forms the groups itself, committing whatever has reached its socket when the previous
commit ends, so that it never waits for the event loop between commits (measured: about 11 ms
of wall time and 5 ms of CPU per group commit of about 18 steps, under the ingest benchmark).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import pickle
import select
import signal
import socket
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from gateway.store_schema import (
    ERASED_PREFIX,
    LIST_MORE,
    RESPONDENT_PREFIX,
    SESSION_STEP,
    STEP_INSERTS,
    SUPPRESS,
    UNSUPPRESS,
    StepWrite,
    StoreError,
    dumps,
    insert_many,
    mark_rows_delivered,
    open_writer,
    pending_keys,
    to_ts,
)

log = logging.getLogger(__name__)

# Events for Seda's own channels (prompts to send); backends with no `events` list never get them.
PRIVATE_PREFIX = "outbound."
START_TIMEOUT = 30.0  # seconds for the child to start, open the database and check it
CLOSE_TIMEOUT = 30.0  # seconds close() waits for the answers to what was submitted
_HEADER = struct.Struct("!I")


class WriterLost(StoreError):
    """The writer process stopped during a commit: the batch may or may not be stored."""


class Prepared(NamedTuple):
    """A step write as rows, its JSON already encoded: what crosses to the writer process
    (strings pickle at a fraction of the cost of the dicts they encode)."""

    session: tuple[Any, ...] | None  # sessions columns but updated_at; `events` the new ids
    answers: list[tuple[str, str, str, str]]  # id, response_id, question_id, JSON
    inbound: tuple[str, str, str, str] | None  # channel, provider, message id, result JSON
    events: list[tuple[str, str, str, str, float | None]]  # order key, id, type, JSON, not before
    suppress: tuple[tuple[str, str], ...]
    unsuppress: tuple[str, ...]
    delivered: tuple[int, ...]
    # Ids to add to the lists of sessions other than `session` (response id, ids): an answer or
    # event of a response whose session this write does not carry (rare).
    listed: tuple[tuple[str, str], ...] = ()


def lazy(write: StepWrite | Prepared) -> bool:
    """Only marks delivered rows: may wait for company before committing (a lost mark only
    means a repeat delivery, which backends de-duplicate)."""
    others = write.session, write.answers, write.inbound, write.events, write.suppress
    return bool(write.delivered) and not any(others) and not write.unsuppress


def prepare(write: StepWrite) -> Prepared:
    """`write` as the rows it will insert (without the commit's time)."""
    answers = [(a["id"], a["response_id"], a["question_id"], dumps(a)) for a in write.answers]
    inbound = None
    if write.inbound is not None:
        channel, provider, message_id, result = write.inbound
        inbound = (channel, provider, message_id, dumps(result))
    events = []
    # Each response lists its answers' and events' ids in its session (migration 6).
    ids: dict[str, dict[str, None]] = {}
    for answer_id, response_id, _, _ in answers:
        ids.setdefault(response_id, {})[answer_id] = None
    for order_key, event in write.events:
        # Prompts held back by quiet hours carry the moment they may go out.
        not_before = (event.get("data") or {}).get("not_before")
        due = datetime.fromisoformat(not_before).timestamp() if not_before else None
        event_id = str(event["id"])
        events.append((order_key, event_id, str(event["type"]), dumps(event), due))
        ids.setdefault(order_key, {})[event_id] = None
    session = None
    if (s := write.session) is not None:
        expires = None if s.expires_at is None else to_ts(s.expires_at)
        remind = None if s.remind_at is None else to_ts(s.remind_at)
        key = (s.response_id, s.channel, s.address, s.survey_id, s.status)
        session = (*key, dumps(s.data), expires, remind, _joined(ids.pop(s.response_id, {})))
    listed = tuple((key, _joined(found)) for key, found in ids.items() if not _respondent(key))
    return Prepared(
        session,
        answers,
        inbound,
        events,
        write.suppress,
        write.unsuppress,
        write.delivered,
        listed,
    )


def _joined(ids: Iterable[str]) -> str:
    return "".join(f"{one} " for one in ids)


def _respondent(order_key: str) -> bool:
    """A respondent's own order key (RESPONDENT_KEYS), or the erasure's: no session lists it."""
    return order_key.startswith((RESPONDENT_PREFIX, ERASED_PREFIX))


def apply_writes(
    conn: sqlite3.Connection,
    writes: Sequence[Prepared],
    backends: Mapping[str, frozenset[str] | None],
    now: float,
) -> None:
    """Write a batch of steps inside the caller's transaction: one INSERT per table."""
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in STEP_INSERTS}
    suppressed: dict[str, str | None] = {}  # the net effect, in write order
    delivered = [seq for write in writes for seq in write.delivered]
    more: list[tuple[str, str]] = []  # (response id, ids) for sessions not in this batch
    if delivered:
        mark_rows_delivered(conn, delivered, now)
    for write in writes:
        if write.session is not None:
            rows["sessions"].append((*write.session, now))
        more += write.listed
        rows["answers"] += [(*answer, now) for answer in write.answers]
        if write.inbound is not None:
            rows["inbound_ids"].append((*write.inbound, now))
        for order_key, event_id, event_type, payload, not_before in write.events:
            public = not event_type.startswith(PRIVATE_PREFIX)
            due = now if not_before is None else not_before
            for backend, types in backends.items():
                if (public and types is None) or (types is not None and event_type in types):
                    item = (event_id, backend, order_key, event_type, payload)
                    rows["outbox"].append((*item, due, now, now, 0))
        for respondent_id, reason in write.suppress:
            suppressed[respondent_id] = reason
        for respondent_id in write.unsuppress:
            suppressed[respondent_id] = None
    if rows["outbox"]:
        # A new row is the head of its order key when nothing of that key is pending: not in
        # the table, nor earlier in this batch.
        keys = {(row[1], row[2]) for row in rows["outbox"]}
        taken = pending_keys(conn, keys)
        for i, row in enumerate(rows["outbox"]):
            if (row[1], row[2]) not in taken:
                taken.add((row[1], row[2]))
                rows["outbox"][i] = (*row[:-1], 1)
    for session in rows.pop("sessions"):  # in order: a row the upsert adds may be stepped next
        if conn.execute(SESSION_STEP, session).rowcount == 0:
            insert_many(conn, "sessions", [session])
    for table, table_rows in rows.items():
        if table_rows:
            insert_many(conn, table, table_rows)
    if more:
        conn.executemany(LIST_MORE, more)
    for respondent_id, why in suppressed.items():
        if why is None:
            conn.execute(UNSUPPRESS, (respondent_id,))
        else:
            conn.execute(SUPPRESS, (respondent_id, why, now))


def commit_writes(
    conn: sqlite3.Connection,
    writes: Sequence[Prepared],
    backends: Mapping[str, frozenset[str] | None],
    now: float,
) -> None:
    """`apply_writes` in one IMMEDIATE transaction, rolled back whole on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        apply_writes(conn, writes, backends, now)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# -- the child process --------------------------------------------------------------------------
# Frames both ways: a 4-byte length, then a pickle. Parent to child: a list of (seq, write, now),
# the steps the parent's event loop submitted in one turn. Child to parent: (transactions, results)
# after each group commit, with results a list of (seq, None) for committed or (seq, (kind,
# message)) with kind "integrity" or "error". The first frame after start is None once the
# database is open and durable, or ("error", why) if not. The child, not the event loop, forms
# the groups: it commits whatever has reached its socket by the time the previous commit ends,
# so that it never waits for a busy event loop between commits. The socket pair joins these two
# processes only, so the pickles never come from elsewhere.

BATCH_CAP = 500  # steps per group commit
LAZY_WAIT = 0.02  # seconds a group of delivery marks alone waits for a step to share its commit

_Item = tuple[int, Prepared, float]
_Result = tuple[int, "tuple[str, str] | None"]


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _Inbox:
    """The child's end of the socket: frames as they come, read whole or not at all."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self.items: collections.deque[_Item] = collections.deque()

    def fill(self, block: bool, timeout: float | None = None) -> None:
        """Read what has arrived; with `block`, wait (up to `timeout`) for something first.
        Raises EOFError once the parent has closed its end and nothing is left."""
        if block:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return
        while True:
            try:
                chunk = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not chunk:
                if not self.items:
                    raise EOFError
                break
            self._buffer += chunk
            if len(chunk) < 1 << 20:
                break
        while len(self._buffer) >= _HEADER.size:
            size = _HEADER.unpack_from(self._buffer)[0]
            if len(self._buffer) < _HEADER.size + size:
                break
            self.items.extend(pickle.loads(self._buffer[_HEADER.size : _HEADER.size + size]))
            del self._buffer[: _HEADER.size + size]

    def group(self) -> list[_Item]:
        """The next group to commit: what has arrived, up to the cap; marks alone wait a moment
        for a step to share their commit."""
        while not self.items:
            self.fill(block=True)
        self.fill(block=False)
        deadline = time.monotonic() + LAZY_WAIT
        while all(lazy(write) for _, write, _ in self.items):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.fill(block=True, timeout=left)
        return [self.items.popleft() for _ in range(min(BATCH_CAP, len(self.items)))]


def _commit_group(
    conn: sqlite3.Connection,
    group: list[_Item],
    backends: Mapping[str, frozenset[str] | None],
) -> tuple[int, list[_Result]]:
    """Commit a group in one transaction; if that fails, each step alone, so that only the bad
    steps' callers see an error. Returns the transactions committed and each step's result."""
    writes, now = [write for _, write, _ in group], max(now for *_, now in group)
    answer = _try_commit(conn, writes, backends, now)
    if answer is None or len(group) == 1:
        return (1 if answer is None else 0), [(seq, answer) for seq, _, _ in group]
    results = [(seq, _try_commit(conn, [write], backends, now)) for seq, write, now in group]
    return sum(answer is None for _, answer in results), results


def _try_commit(
    conn: sqlite3.Connection,
    writes: list[Prepared],
    backends: Mapping[str, frozenset[str] | None],
    now: float,
) -> tuple[str, str] | None:
    try:
        commit_writes(conn, writes, backends, now)
    except sqlite3.IntegrityError as exc:
        return ("integrity", str(exc))
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    return None


def _child(path: str, backends: dict[str, frozenset[str] | None], sock: socket.socket) -> None:
    """The writer process: commit what the parent sends until it closes the socket."""
    # Ctrl-C and a service manager's TERM reach the whole process group: the parent commits
    # what it has submitted and then closes the socket, which is what ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the parent stops cleanly
    try:
        conn = open_writer(Path(path))
    except Exception as exc:
        sock.sendall(_frame(("error", str(exc))))
        return
    sock.sendall(_frame(None))
    inbox = _Inbox(sock)
    try:
        while True:
            try:
                group = inbox.group()
            except EOFError:
                return
            sock.sendall(_frame(_commit_group(conn, group, backends)))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent is gone
    finally:
        conn.close()


# -- the parent's side ---------------------------------------------------------------------------


class WriterProcess:
    """The parent's handle on the writer process. Steps are sent as they are submitted (one
    frame per turn of the event loop); the child groups them; a reader task resolves each
    step's future from the child's answers."""

    def __init__(self, path: Path, backends: Mapping[str, frozenset[str] | None]) -> None:
        self._path = path
        self._backends = dict(backends)
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._seq = 0
        self._outgoing: list[_Item] = []
        self._waiting: dict[int, asyncio.Future[None]] = {}
        # Called with the number of transactions the child committed, after their callers are
        # answered (the store counts them and wakes the forwarder).
        self.on_committed: Callable[[int], None] = lambda _: None

    @classmethod
    async def start(
        cls, path: Path, backends: Mapping[str, frozenset[str] | None]
    ) -> WriterProcess:
        """Start the writer process; return once it has opened and checked the database."""
        writer = cls(path, backends)
        await writer._spawn()
        return writer

    async def _spawn(self) -> None:
        # spawn, not fork: the server has threads (SQLite readers, executors) by now.
        context = multiprocessing.get_context("spawn")
        ours, theirs = socket.socketpair()
        try:
            process = context.Process(
                target=_child,
                args=(str(self._path), self._backends, theirs),
                name="seda-store-writer",
                daemon=True,
            )
            await asyncio.to_thread(process.start)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._process = process
        self._reader, self._writer = await asyncio.open_connection(sock=ours)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                answer = await self._read()
        except (TimeoutError, EOFError, OSError) as exc:
            await self.close()
            raise StoreError(f"the store writer process did not start: {exc!r}") from None
        if answer is not None:
            await self.close()
            raise StoreError(f"the store writer process could not open the database: {answer[1]}")
        self._reading = asyncio.get_running_loop().create_task(
            self._read_answers(self._reader), name="store-writer-answers"
        )

    async def commit(self, write: StepWrite, now: float) -> None:
        """Return once `write` is committed, in a group with whatever else reached the child.
        Raises WriterLost if the process stopped before answering (the next commit starts a new
        one), sqlite3.IntegrityError for a constraint, StoreError for anything else; the last two
        committed nothing of this write."""
        if self._writer is None:
            async with self._starting:
                if self._writer is None:
                    log.error("store writer process is not running: starting a new one")
                    await self._spawn()
        prepared = prepare(write)  # a bad write raises here, before anything waits for it
        self._seq += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[self._seq] = done
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append((self._seq, prepared, now))
        await done

    def _flush(self) -> None:
        """Send what this turn of the event loop submitted, as one frame."""
        items, self._outgoing = self._outgoing, []
        if self._writer is None or self._writer.is_closing():
            self._fail([seq for seq, _, _ in items], WriterLost("the store writer process stopped"))
            return
        try:
            frame = _frame(items)
        except Exception:  # something in a write cannot be pickled: fail only that write
            frame = b""
            for item in items:
                try:
                    frame += _frame([item])
                except Exception as exc:
                    self._fail([item[0]], StoreError(f"write not committed: {exc!r}"))
        self._writer.write(frame)

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        """Resolve each step's future from the child's answers until the socket closes."""
        try:
            while True:
                committed, results = await self._read(reader)
                for seq, answer in results:
                    done = self._waiting.pop(seq, None)
                    if done is None or done.done():
                        continue
                    if answer is None:
                        done.set_result(None)
                    elif answer[0] == "integrity":
                        done.set_exception(sqlite3.IntegrityError(answer[1]))
                    else:
                        done.set_exception(StoreError(f"write not committed: {answer[1]}"))
                if committed:
                    self.on_committed(committed)
        except (EOFError, OSError) as exc:
            # Whatever the child had not answered may or may not be stored: fail it once and
            # never send it again (callers retry with their message ids, which de-duplicate).
            lost = WriterLost(f"the store writer process stopped: {exc!r}")
            self._fail(list(self._waiting), lost)
            if self._reader is reader:
                await self._disconnect()

    def _fail(self, seqs: list[int], error: BaseException) -> None:
        for seq in seqs:
            done = self._waiting.pop(seq, None)
            if done is not None and not done.done():
                done.set_exception(error)

    async def _read(self, reader: asyncio.StreamReader | None = None) -> Any:
        reader = reader or self._reader
        assert reader is not None
        try:
            header = await reader.readexactly(_HEADER.size)
            data = await reader.readexactly(_HEADER.unpack(header)[0])
        except asyncio.IncompleteReadError:
            raise EOFError("the writer process closed its socket") from None
        return pickle.loads(data)

    async def close(self) -> None:
        """Wait for the answers to what was submitted, then close the socket (the process then
        exits) and wait for the process to end."""
        if self._outgoing:
            self._flush()
        if self._waiting:
            await asyncio.wait(list(self._waiting.values()), timeout=CLOSE_TIMEOUT)
        hung = bool(self._waiting)
        if hung:  # a stuck disk, a stopped process: stop waiting, and stop it
            log.error("store writer process did not answer in time: killing it")
            self._fail(list(self._waiting), WriterLost("the store writer process did not answer"))
        await self._disconnect(kill=hung)

    async def _disconnect(self, kill: bool = False) -> None:
        writer, process, reading = self._writer, self._process, self._reading
        self._reader = self._writer = self._process = self._reading = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        if process is not None:
            if kill:
                process.kill()
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                log.error("store writer process did not stop: killing it")
                process.kill()
                await asyncio.to_thread(process.join, 5)
