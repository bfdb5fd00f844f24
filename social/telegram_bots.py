"""The configured Telegram bots: one python-telegram-bot Application each, without an Updater."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telegram.ext import Application

from gateway.config import ConfigError
from social.common import number, text
from social.telegram_request import AiohttpRequest

# setWebhook's secret_token: 1-256 characters A-Z, a-z, 0-9, _ and - (Bot API, setWebhook).
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}\Z")
MODES = ("webhook", "polling")
REPLIES = ("inline", "api")  # a reply's prompts: in the webhook answer, or by sendMessage


@dataclass
class TelegramBot:
    """One configured bot: its PTB application and how updates reach Seda."""

    name: str
    app: Application[Any, Any, Any, Any, Any, Any]
    requests: tuple[AiohttpRequest, AiohttpRequest]  # Bot API calls, getUpdates
    token: str
    secret: str
    mode: str  # webhook (the default) or polling
    webhook_url: str | None  # set at start when given; else the operator calls setWebhook
    poll_timeout: int
    reply: str = "api"  # inline (webhook bots' default) or api: see social/README.md
    ready: bool = False

    def __repr__(self) -> str:
        # PTB's own repr of the application shows the token.
        return (
            f"TelegramBot({self.name!r}, mode={self.mode!r}, reply={self.reply!r},"
            f" ready={self.ready})"
        )


def build_bot(name: str, entry: Mapping[str, Any]) -> TelegramBot:
    """A bot from its config entry: token, secret, mode, reply, base_url, base_file_url, ..."""
    where = f"channels.telegram.bots.{name}"
    token = text(entry, "token", where)
    mode = text(entry, "mode", where, default="webhook")
    if mode not in MODES:
        raise ConfigError(f"{where}.mode: {' or '.join(MODES)}")
    secret = str(entry.get("secret") or "")
    if mode == "webhook" and not _SECRET.match(secret):
        raise ConfigError(
            f"{where}.secret: required for webhooks, 1-256 characters of A-Z, a-z, 0-9, _ and -"
        )
    poll_timeout = int(number(entry, "poll_timeout", where, 30))
    reply = text(entry, "reply", where, default="inline" if mode == "webhook" else "api")
    if reply not in REPLIES:
        raise ConfigError(f"{where}.reply: {' or '.join(REPLIES)}")
    if reply == "inline" and mode != "webhook":
        # getUpdates has no answer to carry a method: a polling bot sends every prompt.
        raise ConfigError(f"{where}.reply: inline needs mode webhook (polling replies by api)")
    requests = (AiohttpRequest(), AiohttpRequest(read_timeout=10.0, pool_size=1))
    builder = (
        Application.builder()
        .token(token)
        .updater(None)  # updates arrive on Seda's own route (or its polling task)
        .request(requests[0])
        .get_updates_request(requests[1])
    )
    # A local Bot API server, Telegram's test environment, or a fake one in tests.
    if entry.get("base_url"):
        builder = builder.base_url(text(entry, "base_url", where))
    if entry.get("base_file_url"):
        builder = builder.base_file_url(text(entry, "base_file_url", where))
    webhook_url = text(entry, "webhook_url", where) if entry.get("webhook_url") else None
    app = builder.build()
    return TelegramBot(name, app, requests, token, secret, mode, webhook_url, poll_timeout, reply)
