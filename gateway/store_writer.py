"""The write side of the store: what a group commit writes, and the process that commits it.

`apply_writes` turns a batch of step writes into a few multi-row statements. `WriterProcess`
runs it in a child process that owns one SQLite connection. With the commits in a thread of
the server's own process, every statement and the COMMIT had to win the GIL back from a busy
event loop (measured: 21 ms per group commit of 25 steps, of which about 11 ms was CPU and
fsync), and each commit was followed by the loop waiting for the thread's result the same way.
The child answers over a socket that the event loop reads itself: 9 ms per group commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import pickle
import signal
import socket
import sqlite3
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.store_schema import (
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
_HEADER = struct.Struct("!I")


class WriterLost(StoreError):
    """The writer process stopped during a commit: the batch may or may not be stored."""


def apply_writes(
    conn: sqlite3.Connection,
    writes: Sequence[StepWrite],
    backends: Mapping[str, frozenset[str] | None],
    now: float,
) -> None:
    """Write a batch of steps inside the caller's transaction: one INSERT per table."""
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in STEP_INSERTS}
    suppressed: dict[str, str | None] = {}  # the net effect, in write order
    delivered = [seq for write in writes for seq in write.delivered]
    if delivered:
        mark_rows_delivered(conn, delivered, now)
    for write in writes:
        if (s := write.session) is not None:
            expires = None if s.expires_at is None else to_ts(s.expires_at)
            remind = None if s.remind_at is None else to_ts(s.remind_at)
            key = (s.response_id, s.channel, s.address, s.survey_id, s.status)
            rows["sessions"].append((*key, dumps(s.data), now, expires, remind))
        for answer in write.answers:
            ids = (answer["id"], answer["response_id"], answer["question_id"])
            rows["answers"].append((*ids, dumps(answer), now))
        if write.inbound is not None:
            channel, provider, message_id, result = write.inbound
            rows["inbound_ids"].append((channel, provider, message_id, dumps(result), now))
        for order_key, event in write.events:
            event_id, event_type, payload = str(event["id"]), str(event["type"]), dumps(event)
            public = not event_type.startswith(PRIVATE_PREFIX)
            # Prompts held back by quiet hours carry the moment they may go out.
            not_before = (event.get("data") or {}).get("not_before")
            due = datetime.fromisoformat(not_before).timestamp() if not_before else now
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
    for table, table_rows in rows.items():
        if table_rows:
            insert_many(conn, table, table_rows)
    for respondent_id, why in suppressed.items():
        if why is None:
            conn.execute(UNSUPPRESS, (respondent_id,))
        else:
            conn.execute(SUPPRESS, (respondent_id, why, now))


def commit_writes(
    conn: sqlite3.Connection,
    writes: Sequence[StepWrite],
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
# Frames both ways: a 4-byte length, then a pickle. Parent to child: (writes, now). Child to
# parent: None for committed, else (kind, message) with kind "integrity" or "error"; the first
# frame after start is None once the database is open and durable, or ("error", why) if not.
# The socket pair joins these two processes only, so the pickles never come from elsewhere.


def _read_frame(sock: socket.socket) -> Any:
    header = _recv_exactly(sock, _HEADER.size)
    return pickle.loads(_recv_exactly(sock, _HEADER.unpack(header)[0]))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            raise EOFError
        buffer += chunk
    return bytes(buffer)


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _child(path: str, backends: dict[str, frozenset[str] | None], sock: socket.socket) -> None:
    """The writer process: commit each batch it is sent until the parent closes the socket."""
    # Ctrl-C and a service manager's TERM reach the whole process group: the parent commits
    # what it has queued and then closes the socket, which is what ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        conn = open_writer(Path(path))
    except Exception as exc:
        sock.sendall(_frame(("error", str(exc))))
        return
    sock.sendall(_frame(None))
    try:
        while True:
            try:
                writes, now = _read_frame(sock)
            except EOFError:
                return
            try:
                commit_writes(conn, writes, backends, now)
                answer: tuple[str, str] | None = None
            except sqlite3.IntegrityError as exc:
                answer = ("integrity", str(exc))
            except Exception as exc:
                answer = ("error", f"{type(exc).__name__}: {exc}")
            sock.sendall(_frame(answer))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent is gone
    finally:
        conn.close()


class WriterProcess:
    """The parent's handle on the writer process: one batch in flight at a time."""

    def __init__(self, path: Path, backends: Mapping[str, frozenset[str] | None]) -> None:
        self._path = path
        self._backends = dict(backends)
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

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

    async def commit(self, writes: Sequence[StepWrite], now: float) -> None:
        """Commit `writes` in one transaction in the writer process. Raises WriterLost if the
        process stopped meanwhile (the next commit starts a new one), sqlite3.IntegrityError for
        a constraint, StoreError for anything else; the last two committed nothing."""
        if self._writer is None:
            log.error("store writer process is not running: starting a new one")
            await self._spawn()
        assert self._writer is not None
        try:
            self._writer.write(_frame((list(writes), now)))
            await self._writer.drain()
            answer = await self._read()
        except (EOFError, OSError) as exc:
            await self.close()
            raise WriterLost(f"the store writer process stopped: {exc!r}") from None
        if answer is None:
            return
        kind, message = answer
        if kind == "integrity":
            raise sqlite3.IntegrityError(message)
        raise StoreError(f"write not committed: {message}")

    async def _read(self) -> Any:
        assert self._reader is not None
        try:
            header = await self._reader.readexactly(_HEADER.size)
            data = await self._reader.readexactly(_HEADER.unpack(header)[0])
        except asyncio.IncompleteReadError:
            raise EOFError("the writer process closed its socket") from None
        return pickle.loads(data)

    async def close(self) -> None:
        """Close the socket (the process then exits) and wait for the process to end."""
        writer, process = self._writer, self._process
        self._reader = self._writer = self._process = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                log.error("store writer process did not stop: killing it")
                process.kill()
                await asyncio.to_thread(process.join, 5)
