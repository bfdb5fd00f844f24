"""Polling for providers that do not push (Kavenegar): fetch, spool, hand to the core, forget."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.logs import fields
from sms.base import Line, Poller, Received

log = logging.getLogger("seda.sms.poll")

Receive = Callable[[Line, Received], Awaitable[Any]]


class PollLoop:
    """Fetches a line's unread messages every `poll_interval` seconds.

    The provider marks what it returns as read, so a fetched message exists only here until the
    core has committed it. With `spool: <file>` configured the batch is written (fsync, atomic
    rename) before any of it is processed and reloaded at start, so a crash loses nothing; without
    it, messages fetched but not yet committed are lost if the process dies in that window.
    A message whose processing fails stays pending (with those after it) for the next tick.
    """

    def __init__(
        self,
        line: Line,
        provider: Poller,
        receive: Receive,
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.line = line
        self.provider = provider
        self.receive = receive
        self.http = http
        self.interval = float(line.spec.get("poll_interval", 10))
        spool = line.spec.get("spool")
        self.spool = Path(spool) if spool else None
        self.pending: OrderedDict[str, Received] = OrderedDict()
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
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> int:
        """One round: retry what is pending, fetch what is new, process in order."""
        try:
            fetched = await self.provider.fetch(self.http())
        except Exception as exc:  # the provider is down or answered nonsense: try next tick
            log.warning(
                "sms poll failed", extra=fields(line=self.line.name, error=type(exc).__name__)
            )
            fetched = []
        for key, message in fetched:
            self.pending.setdefault(key, message)
        if fetched:
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
            done += 1
        if done:
            self._save()
        return done

    def _load(self) -> None:
        if self.spool is None or not self.spool.exists():
            return
        for item in json.loads(self.spool.read_text("utf-8")):
            message = Received(item["sender"], item["text"], item["message_id"])
            self.pending.setdefault(item["key"], message)
        log.info("sms spool loaded", extra=fields(line=self.line.name, pending=len(self.pending)))

    def _save(self) -> None:
        if self.spool is None:
            return
        items = [
            {"key": k, "sender": m.sender, "text": m.text, "message_id": m.message_id}
            for k, m in self.pending.items()
        ]
        tmp = self.spool.with_suffix(self.spool.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(items, out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.spool)
