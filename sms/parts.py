"""Parts of concatenated SMS, held on disk until the message is whole.

Vonage posts each part of a long message in its own webhook, answered 2xx at once, and does
not send an acknowledged part again. So a part is written to a file of its own in the line's
parts folder (`spool/sms-<line>.parts/` beside the database; fsync, atomic rename, fsync of the
folder) before the webhook is answered, and the folder is read again at start. When the last
part comes, the joined message goes to the core; once it is committed, a small `.done` file
names the parts' ids and the parts' files are removed. The `.done` files are kept for 24 hours,
as long as Vonage repeats a webhook whose answer was slow or lost: a repeated part adds no text.
A message whose other parts have not come `concat_timeout` seconds after its first is recorded
as it is, its parts joined in order, rather than dropped.

A file per part, not a table: a part lives for seconds to minutes, the folder is empty most of
the time, and the core is told nothing until the message is whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.durable import fsync_path
from gateway.logs import fields
from sms.base import Line, Part, Received, Refused

log = logging.getLogger("seda.sms.parts")

Receive = Callable[[Line, Received], Awaitable[Any]]
Key = tuple[str, str, int]  # sender, reference, total
MAX_PENDING = 10_000  # incomplete messages held per line; more are refused (503, retried)
REMEMBER = 24 * 3600.0  # seconds a recorded message's part ids are kept (Vonage's retries)
MAX_SWEEP = 30.0  # seconds between looks for messages that are whole or past their time
HELD = "part of a concatenated message"
REPEATED = "repeated part of a concatenated message"


@dataclass
class _Message:
    """The parts of one message held so far."""

    first_at: float  # when its first part came (the gateway clock, epoch seconds)
    parts: dict[int, Part] = field(default_factory=dict)
    recording: bool = False  # handed to the core, not committed yet
    closed: bool = False  # a new message took its reference: recorded as it is, no more parts

    def complete(self) -> bool:
        return len(self.parts) == next(iter(self.parts.values())).total


@dataclass(frozen=True)
class Whole:
    """A message ready for the core: all its parts, or those that came before its time ran out."""

    key: Key
    message: Received
    parts: tuple[Part, ...]
    complete: bool


class HeldParts:
    """The parts of one line's concatenated messages, on disk (`folder`) until recorded."""

    def __init__(
        self, line: Line, folder: Path | None, now: Callable[[], float], timeout: float
    ) -> None:
        self.line = line
        self.folder = folder
        self.now = now
        self.timeout = timeout
        self.interval = min(MAX_SWEEP, timeout / 4)
        self.held: dict[Key, _Message] = {}
        self.recorded: dict[str, float] = {}  # part id -> when its message was recorded
        self.holding: set[str] = set()  # the ids of the parts held now
        self._done_files: dict[str, tuple[float, list[str]]] = {}  # name -> when, part ids
        self._task: asyncio.Task[None] | None = None
        if folder is None:
            log.warning("no state folder: parts of long SMS are held in memory, lost on a crash",
                        extra=fields(line=line.name))  # fmt: skip

    def start(self, receive: Receive) -> None:
        """Read what was held before a restart; record whole or expired messages from now on."""
        self._load()
        self._task = asyncio.create_task(self._run(receive))

    async def stop(self) -> None:
        """Stop looking (what is held stays on disk)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def hold(self, part: Part) -> tuple[Whole, ...] | str:
        """Keep one part (on disk when this returns): the messages to record now, in order,
        else why there is nothing to record yet (HELD, or REPEATED for a part already held or
        recorded).

        A part whose place (sender, reference, total, number) is held already under another
        id belongs to a new message: phones reuse references, so the held parts are another,
        earlier message. They are recorded as they are, first (as if their time had run out),
        and the part starts the new message; neither message's text is lost or mixed."""
        if self._repeated(part):
            return REPEATED
        key = (part.sender, part.ref, part.total)
        message = self.held.get(key)
        if message is None and len(self.held) >= MAX_PENDING:
            raise Refused(503, "too many incomplete concatenated messages")
        if message is not None and message.recording:
            raise Refused(503, "this part's message is being recorded: send the part again")
        at = self.now()
        await asyncio.to_thread(self._write, _name(part.message_id, ".part"), _to_json(part, at))
        if self._repeated(part):  # the same part, held or recorded while it was written
            if part.message_id in self.recorded:
                await asyncio.to_thread(self._remove, [_name(part.message_id, ".part")])
            return REPEATED
        message = self.held.setdefault(key, _Message(at))
        if message.recording:  # its message went to the core while this part was written
            raise Refused(503, "this part's message is being recorded: send the part again")
        wholes: list[Whole] = []
        if part.number in message.parts:  # another id in the same place: a new message
            wholes.append(self._take(self._close(key)))
            log.warning("sms parts: a new message reuses a held reference; the held parts are"
                        " recorded as they are", extra=fields(line=self.line.name))  # fmt: skip
            message = self.held.setdefault(key, _Message(at))
        message.parts[part.number] = part
        self.holding.add(part.message_id)
        if message.complete():  # before any other await
            wholes.append(self._take(key))
        return tuple(wholes) if wholes else HELD

    def _close(self, key: Key) -> Key:
        """Set the open message at `key` apart (closed) under a key of its own; that key."""
        message = self.held.pop(key)
        message.closed = True
        first = message.parts[min(message.parts)].message_id
        closed = (key[0], f"{key[1]}\x00{first}", key[2])  # no reference holds a NUL
        self.held[closed] = message
        return closed

    async def recorded_whole(self, whole: Whole) -> None:
        """The core committed this message: remember its part ids, remove its parts' files."""
        at = self.now()
        ids = [p.message_id for p in whole.parts]
        self.recorded.update(dict.fromkeys(ids, at))
        self.holding.difference_update(ids)
        self.held.pop(whole.key, None)
        name = _name(ids[0], ".done")
        self._done_files[name] = (at, ids)
        try:
            await asyncio.to_thread(self._write, name, {"ids": ids, "at": at})
            await asyncio.to_thread(self._remove, [_name(i, ".part") for i in ids])
        except OSError as exc:  # recorded already: a repeat after a restart is a duplicate id
            log.error("sms parts recorded but not cleared from disk",
                      extra=fields(line=self.line.name, error=type(exc).__name__))  # fmt: skip

    async def erase(self, senders: frozenset[str]) -> int:
        """Drop the parts held from these senders (an erased respondent's addresses,
        lower-case), in memory and on disk; returns how many part files went. A message
        being recorded right now is left to its commit, which the erasure then reaches."""
        gone = [
            key
            for key, message in self.held.items()
            if key[0].lower() in senders and not message.recording
        ]
        names = [
            _name(p.message_id, ".part") for key in gone for p in self.held[key].parts.values()
        ]
        for key in gone:
            del self.held[key]
        await asyncio.to_thread(self._remove, names)
        return len(names) if self.folder is not None else 0

    def release(self, whole: Whole) -> None:
        """The core did not commit this message: hold it again (recorded on a later try)."""
        message = self.held.get(whole.key)
        if message is not None:
            message.recording = False

    async def sweep(self, receive: Receive) -> int:
        """Record the messages that are whole (held at a restart) or past concat_timeout;
        returns how many."""
        now = self.now()
        self._forget(now)
        due = [
            key
            for key, m in self.held.items()
            if not m.recording and (m.complete() or m.closed or now - m.first_at >= self.timeout)
        ]
        done = 0
        for key in due:
            whole = self._take(key)
            try:
                await receive(self.line, whole.message)
            except Exception:
                log.exception("sms parts not recorded; trying again",
                              extra=fields(line=self.line.name))  # fmt: skip
                self.release(whole)
                continue
            if not whole.complete:
                log.warning("sms parts expired incomplete: recorded what came",
                            extra=fields(line=self.line.name, parts=len(whole.parts),
                                         total=whole.key[2]))  # fmt: skip
            await self.recorded_whole(whole)
            done += 1
        return done

    async def _run(self, receive: Receive) -> None:
        while True:
            try:
                await self.sweep(receive)
            except Exception:  # a disk error: what is held stays held, the next round tries
                log.exception("sms parts sweep failed", extra=fields(line=self.line.name))
            await asyncio.sleep(self.interval)

    def _repeated(self, part: Part) -> bool:
        return part.message_id in self.recorded or part.message_id in self.holding

    def _take(self, key: Key) -> Whole:
        """The message as the core gets it, marked as being recorded."""
        message = self.held[key]
        message.recording = True
        parts = tuple(message.parts[n] for n in sorted(message.parts))
        # The first part's id names the message (the reference repeats after a while); when it
        # never came, the first that did.
        first = parts[0]
        text = "".join(p.text for p in parts)
        received = Received(first.sender, text, first.message_id)
        return Whole(key, received, parts, message.complete())

    def _forget(self, now: float) -> None:
        """Part ids of messages recorded more than REMEMBER seconds ago: Vonage has stopped."""
        old = []
        for name, (at, ids) in self._done_files.items():
            if now - at < REMEMBER:
                break
            old.append(name)
            for message_id in ids:
                self.recorded.pop(message_id, None)
        for name in old:
            del self._done_files[name]
        if old:
            self._remove(old)

    def _write(self, name: str, data: dict[str, Any]) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.folder / f".{uuid.uuid4().hex}.tmp"
        # Numbers and message text: readable by Seda's user only.
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as out:
            json.dump(data, out)  # ASCII: a lone surrogate in a text is kept, escaped
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.folder / name)
        fsync_path(self.folder)

    def _remove(self, names: list[str]) -> None:
        if self.folder is None:
            return
        for name in names:
            (self.folder / name).unlink(missing_ok=True)

    def _load(self) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        for path in self.folder.glob(".*.tmp"):  # a write cut short: never acknowledged
            path.unlink(missing_ok=True)
        done = []
        for path in self.folder.glob("*.done"):
            data = self._read(path)
            if data is not None:
                done.append((float(data["at"]), path.name, [str(i) for i in data["ids"]]))
        for at, name, ids in sorted(done):
            self._done_files[name] = (at, ids)
            self.recorded.update(dict.fromkeys(ids, at))
        found: list[tuple[float, Part]] = []
        for path in sorted(self.folder.glob("*.part")):
            data = self._read(path)
            if data is None:
                continue
            part, at = _from_json(data)
            if part.message_id in self.recorded:  # recorded just before the restart
                path.unlink(missing_ok=True)
                continue
            found.append((at, part))
        for at, part in sorted(found, key=lambda f: f[0]):  # as they came: who came later
            key = (part.sender, part.ref, part.total)
            if key in self.held and part.number in self.held[key].parts:
                self._close(key)  # a new message under a held reference (see hold)
            message = self.held.setdefault(key, _Message(at))
            message.first_at = min(message.first_at, at)
            message.parts[part.number] = part
            self.holding.add(part.message_id)
        log.info("sms parts loaded", extra=fields(line=self.line.name, messages=len(self.held)))

    def _read(self, path: Path) -> dict[str, Any] | None:
        """A part or done file; None (logged, the file left for the operator) if unreadable."""
        try:
            data = json.loads(path.read_text("utf-8"))
            if path.suffix == ".done":
                float(data["at"])
                list(data["ids"])
            else:
                _from_json(data)
            return dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            log.error("sms parts file unreadable: left in place",
                      extra=fields(line=self.line.name, file=path.name))  # fmt: skip
            return None


def _name(message_id: str, suffix: str) -> str:
    """A file name for a provider id: hashed, so that no id can name a path."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:32] + suffix


def _to_json(part: Part, at: float) -> dict[str, Any]:
    return {"sender": part.sender, "ref": part.ref, "total": part.total, "number": part.number,
            "text": part.text, "message_id": part.message_id, "at": at}  # fmt: skip


def _from_json(data: dict[str, Any]) -> tuple[Part, float]:
    part = Part(str(data["sender"]), str(data["ref"]), int(data["total"]), int(data["number"]),
                str(data["text"]), str(data["message_id"]))  # fmt: skip
    return part, float(data["at"])
