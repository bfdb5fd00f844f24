"""The jsonl backend: one event per line appended to a local file, fsynced before success."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway import jsoncodec
from gateway.backends import DeliveryError
from gateway.durable import fsync_path
from gateway.ids import Clock

log = logging.getLogger(__name__)

_TAIL_CHUNK = 64 * 1024


class JsonlBackend:
    """Appends each event as one compact JSON line; a replay appends it again (same id).

    Every line in the file is whole: a write cut short (a full disk, a crash) is taken back, and
    the events are written again. A file rotated away (logrotate) is left behind: the next write
    goes to a new file at the configured path.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = None
        self._lock = asyncio.Lock()

    async def deliver(self, event: dict[str, Any]) -> None:
        """Append the event and fsync the file."""
        await self._write([jsoncodec.dumps(event)])

    async def deliver_batch(self, payloads: Sequence[str]) -> list[DeliveryError | None]:
        """Append the events' committed JSON in order with one fsync; all or none succeed."""
        try:
            await self._write(payloads)
        except DeliveryError as exc:
            return [exc for _ in payloads]
        return [None for _ in payloads]

    async def _write(self, lines: Sequence[str]) -> None:
        # The store writes compact JSON with no raw newlines, so each event stays one line.
        data = "".join(f"{line}\n" for line in lines).encode("utf-8")
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, data)
            except OSError as exc:
                # Drop the handle: the next attempt reopens (the disk may come back).
                await asyncio.to_thread(self._close_file)
                reason = _reason(exc, self.path)
                raise DeliveryError(f"cannot write {self.path}: {reason}", retryable=True) from exc

    async def close(self) -> None:
        """Close the file."""
        async with self._lock:
            await asyncio.to_thread(self._close_file)

    def _append(self, data: bytes) -> None:
        fd = self._open()
        start = os.fstat(fd).st_size
        try:
            # os.write, not a buffered file: a buffer would keep what a full disk refused and
            # write it out later, in the middle of another line.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            # Take back the part that reached the file: a torn line would swallow the next one.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise

    def _open(self) -> int:
        """The file at `path`, opened again when that is no longer the file held open."""
        if self._fd is not None:
            if _same_file(self._fd, self.path):
                return self._fd
            # Rotated away or deleted (logrotate): writing on would feed a file nobody reads.
            self._close_file()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not self.path.exists()
        # Events hold personal data: a new file is for its owner only.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if created:
                fsync_path(self.path.parent)  # or a crash may lose the new file, lines and all
            torn = _trim_torn_tail(fd)
        except OSError:
            os.close(fd)
            raise
        if torn:
            log.warning(
                "jsonl file ended in a torn line (a write cut short); removed it, the events"
                " are written again",
                extra={"fields": {"backend": self.name, "path": str(self.path), "bytes": torn}},
            )
        self._fd = fd
        return fd

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


def _reason(exc: OSError, path: Path) -> str:
    """The error, naming the path it is about when that is not the file (a folder)."""
    reason = exc.strerror or type(exc).__name__
    if exc.filename is not None and Path(os.fsdecode(exc.filename)) != path:
        return f"{reason}: {os.fsdecode(exc.filename)}"
    return reason


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _trim_torn_tail(fd: int) -> int:
    """Cut the file after its last newline (a line Seda's crash left half written, never
    acknowledged); return how many bytes went."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    keep, end = 0, size
    while end > 0:
        begin = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - begin, begin).rfind(b"\n")
        if newline >= 0:
            keep = begin + newline + 1
            break
        end = begin
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return size - keep


def build(name: str, spec: Mapping[str, Any], *, clock: Clock) -> JsonlBackend:
    """A jsonl backend from its config entry (`path`)."""
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"backend {name!r}: type jsonl needs a `path`")
    return JsonlBackend(name, Path(path))
