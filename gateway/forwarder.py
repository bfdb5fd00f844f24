"""The forwarder: outbox rows to backends, in order per response, with retries and a dead letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.backends import Backend, BatchBackend, DeliveryError
from gateway.ids import Clock
from gateway.store import OutboxRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff, at least Retry-After; give up after the horizon."""

    base: float = 1.0
    cap: float = 300.0
    horizon: timedelta = timedelta(days=3)

    def delay(self, attempts: int, retry_after: float | None, random: Callable[[], float]) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempts - 1, 0), 64))
        wait = random() * ceiling
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.horizon.total_seconds()))
        return wait


@dataclass(frozen=True)
class _Outcome:
    row: OutboxRow
    error: DeliveryError | None


_Inflight = dict[int, "asyncio.Task[list[_Outcome]]"]
BATCH = 256  # events handed at once to a backend that takes batches (one fsync for all)


class Forwarder:
    """Delivers the outbox: one loop per backend, heads of different responses concurrently."""

    def __init__(
        self,
        store: Store,
        backends: Mapping[str, Backend],
        *,
        clock: Clock,
        policy: RetryPolicy | None = None,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        random: Callable[[], float] = _random.random,
        grace: float = 5.0,
    ) -> None:
        self._store = store
        self._backends = dict(backends)
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._concurrency = max(1, concurrency)
        self._poll = poll_interval
        self._random = random
        self._grace = grace  # seconds stop() lets in-flight deliveries finish
        self._wakeups = {name: asyncio.Event() for name in self._backends}
        # isinstance against a runtime Protocol walks its members (tens of µs): decide once.
        self._batched = {
            name: b for name, b in self._backends.items() if isinstance(b, BatchBackend)
        }
        self._disabled_seen: dict[str, tuple[float, bool]] = {}  # name -> (checked at, disabled)
        self._held_until: dict[str, float] = {}  # name -> loop time its Retry-After ends
        self._failing: dict[str, datetime] = {}  # backends whose last delivery failed: since
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.delivered = dict.fromkeys(self._backends, 0)
        self.failures = dict.fromkeys(self._backends, 0)
        self.dead = dict.fromkeys(self._backends, 0)

    def failing(self) -> dict[str, datetime]:
        """The backends failing now, and since when: the first failure of the streak that will
        be retried; a delivery ends it. An event refused for good (dead-lettered at once: that
        event's fault, such as a number that does not exist) starts none, and a backend a 410
        disabled is the store's to say."""
        return dict(self._failing)

    def start(self) -> None:
        """Start one delivery loop per backend."""
        if self._tasks:
            return
        self._stopping = False
        for name in self._backends:
            loop = self._run(name)
            self._tasks.append(asyncio.create_task(loop, name=f"forwarder-{name}"))

    def wake(self) -> None:
        """Look for new rows now (the store calls this after each commit)."""
        for event in self._wakeups.values():
            event.set()

    async def stop(self) -> None:
        """Let in-flight deliveries finish (up to the grace period), then stop the loops."""
        self._stopping = True
        self.wake()
        tasks, self._tasks = self._tasks, []
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, name: str) -> None:
        backend = self._backends[name]
        wakeup = self._wakeups[name]
        inflight: _Inflight = {}
        try:
            while not self._stopping:
                wakeup.clear()
                try:
                    timeout = await self._fill(name, backend, inflight)
                except Exception:
                    log.exception("forwarder could not read the outbox", extra=_fields(name))
                    timeout = self._poll
                await _wait_any(inflight.values(), wakeup, timeout)
                await self._settle(name, inflight)
            if inflight:
                await asyncio.wait(inflight.values(), timeout=self._grace)
                await self._settle(name, inflight)
        finally:
            for task in inflight.values():
                task.cancel()
            for task in inflight.values():
                with contextlib.suppress(BaseException):
                    await task

    async def _fill(self, name: str, backend: Backend, inflight: _Inflight) -> float:
        """Start deliveries for due heads; return how long to wait before looking again."""
        if await self._disabled(name):
            return self._poll
        held = self._held_until.get(name, 0.0) - asyncio.get_running_loop().time()
        if held > 0:
            return min(self._poll, held)
        batch_backend = self._batched.get(name)
        batched = batch_backend is not None
        free = (BATCH if not inflight else 0) if batched else self._concurrency - len(inflight)
        if free <= 0:
            return self._poll  # a finishing delivery wakes the loop
        now = self._clock()
        limit = free + len(inflight)  # the heads in flight are still pending, so may come back
        rows = await self._store.claim_ready(name, now, limit=limit)
        fresh = [r for r in rows if r.seq not in inflight][:free]
        if batch_backend is not None and fresh:
            task = asyncio.create_task(self._deliver_batch(batch_backend, fresh))
            inflight.update(dict.fromkeys((r.seq for r in fresh), task))
        for row in [] if batched else fresh:
            inflight[row.seq] = asyncio.create_task(self._deliver(backend, row))
        if len(rows) >= limit:
            return self._poll  # every slot is busy now
        due = await self._store.next_due(name, after=now)
        if due is None:
            return self._poll
        return min(self._poll, max(0.0, (due - self._clock()).total_seconds()))

    async def _disabled(self, name: str) -> bool:
        # The CLI enables a backend from another process: look again once per poll interval.
        checked, disabled = self._disabled_seen.get(name, (float("-inf"), False))
        now = asyncio.get_running_loop().time()
        if now - checked >= self._poll:
            disabled = name in await self._store.disabled_backends()
            self._disabled_seen[name] = (now, disabled)
        return disabled

    async def _deliver(self, backend: Backend, row: OutboxRow) -> list[_Outcome]:
        try:
            await backend.deliver(row.event)
        except DeliveryError as exc:
            return [_Outcome(row, exc)]
        except Exception as exc:  # a bug in a backend must not lose the event: retry it
            log.exception("backend raised an unexpected error", extra=_fields(backend.name))
            error = DeliveryError(f"unexpected {type(exc).__name__}", retryable=True)
            return [_Outcome(row, error)]
        return [_Outcome(row, None)]

    async def _deliver_batch(self, backend: BatchBackend, rows: list[OutboxRow]) -> list[_Outcome]:
        try:
            errors = await backend.deliver_batch([row.payload for row in rows])
        except Exception as exc:  # as above: the whole batch is retried
            log.exception("backend raised an unexpected error", extra=_fields(backend.name))
            error = DeliveryError(f"unexpected {type(exc).__name__}", retryable=True)
            return [_Outcome(row, error) for row in rows]
        return [_Outcome(row, error) for row, error in zip(rows, errors, strict=True)]

    async def _settle(self, name: str, inflight: _Inflight) -> None:
        """Record the results of finished deliveries."""
        finished = [seq for seq, task in inflight.items() if task.done()]
        if not finished:
            return
        tasks = {id(inflight[seq]): inflight[seq] for seq in finished}  # a batch shares one task
        outcomes = [outcome for task in tasks.values() for outcome in task.result()]
        try:
            delivered = [o.row.seq for o in outcomes if o.error is None]
            if delivered:
                await self._store.mark_delivered(delivered)
                self.delivered[name] += len(delivered)
                if name in self._failing:
                    del self._failing[name]
                    log.info("backend delivers again", extra=_fields(name))
            for outcome in outcomes:
                if outcome.error is not None:
                    await self._failed(name, outcome.row, outcome.error)
        except Exception:
            # The rows stay pending and are sent again: at least once, never lost.
            log.exception("forwarder could not record deliveries", extra=_fields(name))
        for seq in finished:
            del inflight[seq]

    async def _failed(self, name: str, row: OutboxRow, error: DeliveryError) -> None:
        if error.not_before is not None:
            await self._store.mark_retry(row.seq, error.not_before, str(error))
            log.info("delivery postponed", extra=_fields(name, seq=row.seq, reason=str(error)))
            return
        self.failures[name] += 1
        now = self._clock()
        reason = str(error)
        about = {"event_id": row.event_id, "seq": row.seq, "error": reason}
        if error.disable:
            log.error("backend disabled by its receiver", extra=_fields(name, **about))
            await self._store.disable_backend(name, reason)
            self._disabled_seen.pop(name, None)
            await self._store.mark_retry(row.seq, now, reason)
            return
        if not error.retryable:
            await self._dead(name, row, reason)
            return
        if row.queued_at + self._policy.horizon < now:
            await self._dead(name, row, f"{reason} (gave up after {row.attempts + 1} attempts)")
            return
        delay = self._policy.delay(row.attempts + 1, error.retry_after, self._random)
        await self._store.mark_retry(row.seq, now + timedelta(seconds=delay), reason)
        if error.recipient and error.retry_after is not None:
            # One chat or number is rate-limited: its event waits (the rest of its response
            # behind it), every other recipient goes on, and the backend is not failing.
            about["recipient_hold"] = round(error.retry_after, 3)
            log.info("delivery failed, will retry", extra=_fields(name, **about, delay=delay))
            return
        if error.retry_after is not None:
            # Retry-After speaks for the receiver, not for this event: send it nothing new until
            # then (at most the longest backoff, whatever absurd time it asks for).
            hold = min(error.retry_after, self._policy.cap)
            until = asyncio.get_running_loop().time() + hold
            self._held_until[name] = max(self._held_until.get(name, 0.0), until)
            about["hold"] = round(hold, 3)
        # The first failure after a success is a warning (what an operator alerts on); the
        # retries that follow are the same story.
        level = logging.INFO if name in self._failing else logging.WARNING
        self._failing.setdefault(name, now)
        log.log(level, "delivery failed, will retry", extra=_fields(name, **about, delay=delay))

    async def _dead(self, name: str, row: OutboxRow, reason: str) -> None:
        await self._store.mark_dead(row.seq, reason)
        self.dead[name] += 1
        about = {"event_id": row.event_id, "seq": row.seq, "error": reason}
        log.warning("event moved to the dead letter", extra=_fields(name, **about))


async def _wait_any(tasks: Iterable[asyncio.Future[Any]], wakeup: asyncio.Event, t: float) -> None:
    """Wait until a delivery finishes, someone wakes us, or `t` seconds pass."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(wakeup.wait())
    pending = {waiter, *tasks}
    try:
        await asyncio.wait(pending, timeout=t, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter


def _fields(backend: str, **values: object) -> dict[str, dict[str, object]]:
    return {"fields": {"backend": backend, **values}}
