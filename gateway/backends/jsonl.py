"""The jsonl backend: one event per line appended to a local file, fsynced before success."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from gateway import jsoncodec
from gateway.backends import DeliveryError
from gateway.ids import Clock


class JsonlBackend:
    """Appends each event as one compact JSON line; a replay appends it again (same id)."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._file: IO[bytes] | None = None
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
                raise DeliveryError(
                    f"cannot write {self.path.name}: {exc.strerror or type(exc).__name__}",
                    retryable=True,
                ) from exc

    async def close(self) -> None:
        """Close the file."""
        async with self._lock:
            await asyncio.to_thread(self._close_file)

    def _append(self, data: bytes) -> None:
        if self._file is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Events hold personal data: a new file is for its owner only.
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(descriptor, "ab")  # kept open across deliveries
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()


def build(name: str, spec: Mapping[str, Any], *, clock: Clock) -> JsonlBackend:
    """A jsonl backend from its config entry (`path`)."""
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"backend {name!r}: type jsonl needs a `path`")
    return JsonlBackend(name, Path(path))
