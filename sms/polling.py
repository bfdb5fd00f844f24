"""Polling for providers that do not push (Kavenegar, SMS.ir, Ghasedak, Melipayamak).

Fetch, spool, hand to the core, remember. Two kinds of provider APIs are handled alike:
- APIs that mark what they return as read (Kavenegar, SMS.ir's receive/latest): a fetched
  message exists only here until the core has committed it, so the batch is spooled (fsync,
  atomic rename; `spool/sms-<line>.spool` beside the database unless the line names another
  file, or `spool: false`) before any of it is processed, and reloaded at start;
- APIs that return a message again on the next poll (an inbox read by offset, or one that does
  not say whether it marks): every provider id already held is skipped (`seen`, kept in the
  spool too), and the core's de-duplication by provider id refuses what slips through.
Either way nothing is lost and nothing is answered twice.

A provider with a status API (Kavenegar, SMS.ir, Ghasedak) is also asked, every
`status_interval` seconds (60), for the delivery status of what Seda sent on the line (see
SmsChannel.poll_statuses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.logs import fields
from sms.base import Line, Poller, PollError, Received

log = logging.getLogger("seda.sms.poll")

Receive = Callable[[Line, Received], Awaitable[Any]]
Statuses = Callable[[], Awaitable[Any]]
SEEN = 5000  # provider ids remembered per line (the core's de-duplication is the backstop)
MAX_BACKOFF = 300.0  # seconds between polls at most while the provider keeps failing


def poll_settings(line: Line) -> dict[str, Any]:
    """A polled line's own settings, checked: poll_interval (10 s), poll_max_backoff (300 s),
    status_interval (60 s) and spool (a file, or false for none; None: the default file)."""
    where = f"channels.sms.lines.{line.name}"
    found: dict[str, Any] = {}
    for key, default in (
        ("poll_interval", 10.0),
        ("poll_max_backoff", MAX_BACKOFF),
        ("status_interval", 60.0),
    ):
        value = line.spec.get(key, default)
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if isinstance(value, bool) or not seconds > 0:
            raise ValueError(f"{where}.{key}: a number of seconds above 0")
        found[key] = seconds
    spool = line.spec.get("spool")
    if spool is not None and spool is not False and not isinstance(spool, str):
        raise ValueError(f"{where}.spool: a file, or false for none")
    found["spool"] = spool
    return found


class PollLoop:
    """Fetches a line's new messages every `poll_interval` seconds (10).

    When the provider fails (its API down, 5xx, or the credentials refused), the loop waits
    twice as long each time, up to `poll_max_backoff` seconds (300), and logs why (never the
    key, the numbers or the text). The messages wait at the provider meanwhile: a failed poll
    marks nothing read. A message whose processing fails stays pending (with those after it)
    for the next tick.
    """

    def __init__(
        self,
        line: Line,
        provider: Poller,
        receive: Receive,
        http: Callable[[], aiohttp.ClientSession],
        statuses: Statuses | None = None,
        default_spool: Path | None = None,
    ) -> None:
        self.line = line
        self.statuses = statuses
        settings = poll_settings(line)
        self.status_interval: float = settings["status_interval"]
        self._statuses_at = float("-inf")  # loop time of the last status round
        self.provider = provider
        self.receive = receive
        self.http = http
        self.interval: float = settings["poll_interval"]
        self.max_backoff: float = settings["poll_max_backoff"]
        # Fetched messages are spooled unless the line says `spool: false`: by default next to
        # the database, as the provider may have marked them read already.
        spool = default_spool if settings["spool"] is None else settings["spool"]
        self.spool = Path(spool) if spool else None
        self.pending: OrderedDict[str, Received] = OrderedDict()
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.failures = 0  # consecutive failed polls
        self.failing_since: float | None = None  # epoch seconds of the first of them
        self.polls = 0
        self._task: asyncio.Task[None] | None = None
        if self.spool is None:
            log.warning(
                "no spool file: messages fetched but not yet stored are lost on a crash",
                extra=fields(line=line.name),
            )

    def start(self) -> None:
        """Load the spool and begin polling."""
        self._load()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop polling (pending messages stay in the spool)."""
        if self._task is not None:
            self._task.cancel()
            # A loop that ended with an error (logged when it happened) must not stop the
            # shutdown halfway, with the store left open.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def known(self, key: str) -> bool:
        """Whether this provider id is pending here or was already handed to the core."""
        return key in self.pending or key in self.seen

    def delay(self) -> float:
        """Seconds until the next poll: the interval, doubled for each failure in a row."""
        if not self.failures:
            return self.interval
        return min(self.max_backoff, self.interval * 2.0 ** min(self.failures, 30))

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                await self._status_round()
            except Exception:
                # Such as a spool that cannot be written (a full disk): the loop must not end
                # in silence, with what was fetched held in memory only. It tries again later.
                self._failed()
                log.exception("sms poll round failed; retrying with backoff",
                              extra=fields(line=self.line.name, failures=self.failures,
                                           pending=len(self.pending)))  # fmt: skip
            await asyncio.sleep(self.delay())

    def health(self) -> dict[str, Any]:
        """For /healthz: whether polling works, and since when it fails."""
        found: dict[str, Any] = {"polling": "ok", "pending": len(self.pending)}
        if self._task is None or self._task.done():
            found["polling"] = "stopped"
        elif self.failures:
            since = datetime.fromtimestamp(self.failing_since or time.time(), UTC)
            found.update(polling="failing", failures=self.failures, since=since.isoformat())
        return found

    def _failed(self) -> None:
        if not self.failures:
            self.failing_since = time.time()
        self.failures += 1

    async def _status_round(self) -> None:
        """Ask for delivery statuses when status_interval has passed (never while failing)."""
        now = asyncio.get_running_loop().time()
        if self.statuses is None or self.failures or now - self._statuses_at < self.status_interval:
            return
        self._statuses_at = now
        try:
            await self.statuses()
        except Exception as exc:  # the next round asks again; intake is not held up
            reason = str(exc) if isinstance(exc, PollError) else type(exc).__name__
            log.warning("sms status poll failed; asking again next round",
                        extra=fields(line=self.line.name, provider=self.line.provider,
                                     error=reason))  # fmt: skip

    async def tick(self) -> int:
        """One round: fetch what is new, spool it, process everything pending in order."""
        fetched = await self._fetch()
        fresh = [(k, m) for k, m in fetched if not self.known(k)]
        for key, message in fresh:
            self.pending[key] = message
        if fresh:
            self._save()
        done = 0
        while self.pending:
            key, message = next(iter(self.pending.items()))
            try:
                await self.receive(self.line, message)
            except Exception:
                log.exception("sms polled message not stored; retrying next tick",
                              extra=fields(line=self.line.name))  # fmt: skip
                break
            del self.pending[key]
            self._remember(key)
            done += 1
        if done:
            self._save()
        return done

    async def _fetch(self) -> list[tuple[str, Received]]:
        self.polls += 1
        try:
            fetched = await self.provider.fetch(self.http(), self.known)
        except Exception as exc:  # down, refused, or nonsense: the messages wait at the provider
            self._failed()
            status = exc.status if isinstance(exc, PollError) else None
            reason = str(exc) if isinstance(exc, PollError) else type(exc).__name__
            event = "sms poll failed; retrying with backoff"
            if isinstance(exc, PollError) and exc.auth:
                event = "sms poll refused: check this line's credentials; retrying with backoff"
            log.warning(event, extra=fields(line=self.line.name, provider=self.line.provider,
                                            status=status, error=reason, failures=self.failures,
                                            retry_in=round(self.delay(), 3)))  # fmt: skip
            return []
        if self.failures:
            log.info("sms poll recovered", extra=fields(line=self.line.name, after=self.failures))
        self.failures = 0
        self.failing_since = None
        return fetched

    def _remember(self, key: str) -> None:
        self.seen[key] = None
        self.seen.move_to_end(key)
        while len(self.seen) > SEEN:
            self.seen.popitem(last=False)

    def _load(self) -> None:
        if self.spool is None or not self.spool.exists():
            return
        data = json.loads(self.spool.read_text("utf-8"))
        items = data if isinstance(data, list) else data.get("pending", [])  # a list: older spool
        for item in items:
            message = Received(item["sender"], item["text"], item["message_id"], item.get("to"))
            self.pending.setdefault(item["key"], message)
        for key in [] if isinstance(data, list) else data.get("seen", []):
            self._remember(str(key))
        log.info("sms spool loaded", extra=fields(line=self.line.name, pending=len(self.pending)))

    def _save(self) -> None:
        if self.spool is None:
            return
        pending = [
            {"key": k, "sender": m.sender, "text": m.text, "message_id": m.message_id, "to": m.to}
            for k, m in self.pending.items()
        ]
        tmp = self.spool.with_suffix(self.spool.suffix + ".tmp")
        self.spool.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Numbers and message text: readable by Seda's user only.
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w", encoding="utf-8") as out:
            json.dump({"pending": pending, "seen": list(self.seen)}, out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.spool)
