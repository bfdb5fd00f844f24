"""Time-ordered unique ids (UUID version 7) and an injectable clock."""

from __future__ import annotations

import os
import threading
import time
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
        self._pool = b""  # random bytes read ahead: one getrandom call per 512 ids
        self._used = 0

    def __call__(self) -> str:
        """A new id."""
        with self._lock:
            if self._clock is system_clock:
                ms = time.time_ns() // 1_000_000  # the same instant, without a datetime
            else:
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
            if self._used + 8 > len(self._pool):
                self._pool, self._used = self._random(4096), 0
            start, self._used = self._used, self._used + 8
            rand = int.from_bytes(self._pool[start : self._used], "big") & ((1 << 62) - 1)
            value = (ms & ((1 << 48) - 1)) << 80
            value |= 0x7 << 76
            value |= self._counter << 64
            value |= 0b10 << 62
            value |= rand
            text = f"{value:032x}"  # as str(uuid.UUID(int=value)), at a fifth of the cost
            return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
