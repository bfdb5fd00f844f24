"""One turn at a time per conversation (channel, address): a reply, an invitation or an erasure
of the same respondent never interleave, while different respondents never wait for each other."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Turns:
    """Per-key turns in arrival order; holds only keys in use.

    asyncio.Lock per key behind an asynccontextmanager cost about a tenth of a reply's time on
    the main thread; an uncontended turn here is a dict lookup and no suspension.
    """

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], deque[asyncio.Future[None]]] = {}

    async def acquire(self, key: tuple[str, str]) -> None:
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = deque()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(key)  # handed the turn while being cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            raise

    def release(self, key: tuple[str, str]) -> None:
        queue = self._queues[key]
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        del self._queues[key]

    def held(self) -> int:
        """How many keys are taken now (for tests)."""
        return len(self._queues)


class Turn:
    """`async with Turn(turns, key)`: hold the key's turn for the block."""

    __slots__ = ("_key", "_turns")

    def __init__(self, turns: Turns, key: tuple[str, str]) -> None:
        self._turns = turns
        self._key = key

    async def __aenter__(self) -> None:
        await self._turns.acquire(self._key)

    async def __aexit__(self, *exc: object) -> None:
        self._turns.release(self._key)
