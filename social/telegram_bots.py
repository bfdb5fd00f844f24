"""The configured Telegram bots: one python-telegram-bot Application each, without an Updater."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telegram.ext import Application

from gateway.config import ConfigError, Problems
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
    """A bot from its config entry: token, secret, mode, reply, base_url, base_file_url, ...;
    a ConfigError names every mistake in it."""
    where = f"channels.telegram.bots.{name}"
    p = Problems()
    token = p.value(lambda: text(entry, "token", where), "")
    mode = p.value(lambda: _choice(entry, "mode", where, MODES, "webhook"), "")
    secret = str(entry.get("secret") or "")
    if mode == "webhook" and not _SECRET.match(secret):
        p.add(f"{where}.secret: required for webhooks, 1-256 characters of A-Z, a-z, 0-9, _ and -")
    poll_timeout = int(p.value(lambda: number(entry, "poll_timeout", where, 30), 30.0))
    default_reply = "api" if mode == "polling" else "inline"
    reply = p.value(lambda: _choice(entry, "reply", where, REPLIES, default_reply), "")
    if reply == "inline" and mode == "polling":
        # getUpdates has no answer to carry a method: a polling bot sends every prompt.
        p.add(f"{where}.reply: inline needs mode webhook (polling replies by api)")
    # A local Bot API server, Telegram's test environment, or a fake one in tests.
    base_url = p.value(lambda: _optional(entry, "base_url", where), None)
    base_file_url = p.value(lambda: _optional(entry, "base_file_url", where), None)
    webhook_url = p.value(lambda: _optional(entry, "webhook_url", where), None)
    p.check()
    requests = (AiohttpRequest(), AiohttpRequest(read_timeout=10.0, pool_size=1))
    builder = (
        Application.builder()
        .token(token)
        .updater(None)  # updates arrive on Seda's own route (or its polling task)
        .request(requests[0])
        .get_updates_request(requests[1])
    )
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    app = builder.build()
    return TelegramBot(name, app, requests, token, secret, mode, webhook_url, poll_timeout, reply)


def _choice(
    entry: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...], default: str
) -> str:
    value = text(entry, key, where, default=default)
    if value not in choices:
        raise ConfigError(f"{where}.{key}: {' or '.join(choices)}")
    return value


def _optional(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    """A string setting that may be left out (empty: left out)."""
    return text(entry, key, where) if entry.get(key) else None
