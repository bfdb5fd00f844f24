"""Telegram polling (`mode: polling`): getUpdates in a loop, inside Seda's event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.error import TelegramError

from gateway.logs import fields
from social.telegram_bots import TelegramBot
from social.telegram_updates import Unreadable, parse_update

log = logging.getLogger("seda.telegram")

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
RETRY_CAP = 60.0  # seconds between tries at most, for getUpdates and for a bot's start

Process = Callable[[TelegramBot, Update], Awaitable[Any]]


class Polling:
    """The polling loops of a channel's bots, and which of them fail now (for /healthz)."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self.failing: dict[str, float] = {}  # bot -> epoch seconds of its first failure

    async def run(self, bot: TelegramBot) -> None:
        """getUpdates in a loop; an offset moves past an update only once it was processed (or
        skipped as unreadable)."""
        offset: int | None = None
        delay = 1.0
        while True:
            try:
                updates = await self._updates(bot, offset)
            except Exception as exc:  # whatever it is, the loop goes on: it is the bot's ears
                self.failing.setdefault(bot.name, time.time())
                log.warning(
                    "getUpdates failed, will retry",
                    extra=fields(bot=bot.name, error=type(exc).__name__),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)
                continue
            self.failing.pop(bot.name, None)
            delay = 1.0
            for update in updates:
                if isinstance(update, int):  # unreadable, logged: move past it
                    offset = update + 1
                    continue
                try:
                    await self._process(bot, update)
                except Exception:
                    log.exception(
                        "telegram update failed, fetching it again", extra=fields(bot=bot.name)
                    )
                    await asyncio.sleep(delay)
                    break
                offset = update.update_id + 1

    async def _updates(self, bot: TelegramBot, offset: int | None) -> list[Update | int]:
        """The next updates; the id alone of each that PTB cannot read (it is logged). PTB
        reads a whole batch at once, and one update it cannot read (a newer Bot API) fails the
        batch: then the batch is fetched again as JSON and read update by update."""
        try:
            return list(
                await bot.app.bot.get_updates(
                    offset=offset, timeout=bot.poll_timeout, allowed_updates=ALLOWED_UPDATES
                )
            )
        except TelegramError:
            raise
        except Exception:  # PTB could not read the batch: one by one below, each failure logged
            pass
        asked: dict[str, Any] = {"allowed_updates": list(ALLOWED_UPDATES)}
        if offset is not None:
            asked["offset"] = offset
        # Bot API method names are case-insensitive: "getupdates" reaches getUpdates without
        # PTB's warning that get_updates exists (it parses the batch, which just failed).
        raw = await bot.app.bot.do_api_request("getupdates", api_kwargs=asked)
        found: list[Update | int] = []
        for data in raw if isinstance(raw, list) else []:
            try:
                found.append(parse_update(data, bot))
            except Unreadable as exc:
                not_understood(bot, exc)
                found.append(exc.update_id)
            except ValueError:
                continue  # no update_id: nothing to move the offset past
        return found


def not_understood(bot: TelegramBot, exc: Unreadable) -> None:
    """Log an update that cannot be read, by its id (never its content)."""
    log.warning(
        "telegram update not understood: skipped",
        extra=fields(bot=bot.name, update_id=exc.update_id, problem=exc.problem),
    )
