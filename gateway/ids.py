"""Time-ordered unique ids (UUID version 7) and an injectable clock."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, in UTC with its offset."""
    return datetime.now(UTC)


class IdFactory:
    """Makes UUIDv7 strings: sortable by creation time, unique within and across processes."""

    def __init__(self, clock: Clock = system_clock, random: Callable[[int], bytes] = os.urandom):
        self._clock = clock
        self._random = random
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> str:
        """A new id."""
        with self._lock:
            ms = int(self._clock().timestamp() * 1000)
            if ms <= self._last_ms:
                # Same millisecond (or a clock step back): keep order with a 12-bit counter.
                ms = self._last_ms
                self._counter += 1
                if self._counter > 0xFFF:
                    ms += 1
                    self._counter = 0
            else:
                self._counter = 0
            self._last_ms = ms
            rand = int.from_bytes(self._random(8), "big") & ((1 << 62) - 1)
            value = (ms & ((1 << 48) - 1)) << 80
            value |= 0x7 << 76
            value |= self._counter << 64
            value |= 0b10 << 62
            value |= rand
            text = f"{value:032x}"  # as str(uuid.UUID(int=value)), at a fifth of the cost
            return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
