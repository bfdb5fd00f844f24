"""A fake Telegram Bot API on loopback: records every call, answers like Telegram does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

DATA = Path(__file__).resolve().parent.parent / "data" / "telegram"
TOKEN = "7012345678:AAHfakeTokenForTests_0123456789abcdef"
SECRET = "s3da-webhook_secret"
BOT_USER = {"id": 7012345678, "is_bot": True, "first_name": "Seda", "username": "seda_test_bot"}


class FakeBotApi:
    """Answers getMe, sendMessage, answerCallbackQuery, setWebhook, deleteWebhook, getUpdates."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[tuple[int, dict[str, Any]] | None]] = {}
        self.updates: list[dict[str, Any]] = []
        self.tokens: list[tuple[str, str]] = []  # (method, token) of every call
        self.url = ""
        self._message_id = 100

    def app(self) -> web.Application:
        """The aiohttp application to serve."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.handle)
        return app

    def sent(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every call of one method, in order."""
        return [params for name, params in self.calls if name == method]

    def fail_next(self, method: str, status: int, description: str, **parameters: Any) -> None:
        """Make the next call of `method` fail the way Telegram does."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        self.failures.setdefault(method, []).append((status, body))

    def pass_next(self, method: str) -> None:
        """Let the next call of `method` succeed before the failures queued after it."""
        self.failures.setdefault(method, []).append(None)

    async def wait_for(self, method: str, count: int) -> list[dict[str, Any]]:
        """Wait until `method` was called `count` times (the forwarder delivers after commit)."""
        for _ in range(250):
            if len(self.sent(method)) >= count:
                return self.sent(method)
            await asyncio.sleep(0.02)
        raise AssertionError(f"{method}: {len(self.sent(method))} of {count} calls arrived")

    async def handle(self, request: web.Request) -> web.Response:
        """One Bot API call."""
        method = request.match_info["method"]
        self.tokens.append((method, request.match_info["token"]))
        params = {k: _decoded(v) for k, v in (await request.post()).items()}
        self.calls.append((method, params))
        failures = self.failures.get(method)
        failure = failures.pop(0) if failures else None
        if failure is not None:
            status, body = failure
            return web.json_response(body, status=status)
        return web.json_response({"ok": True, "result": await self._result(method, params)})

    async def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "sendMessage":
            self._message_id += 1
            chat = {"id": int(params["chat_id"]), "type": "private"}
            return {"message_id": self._message_id, "date": 1767225600, "chat": chat,
                    "from": BOT_USER, "text": params["text"]}  # fmt: skip
        if method == "getUpdates":
            offset = int(params.get("offset", 0))
            ready = [u for u in self.updates if u["update_id"] >= offset]
            if not ready:
                await asyncio.sleep(0.05)  # a short long-poll
            return ready
        return True


def _decoded(value: Any) -> Any:
    """PTB sends each parameter form-encoded, objects (reply_markup, lists) as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


def update(name: str) -> bytes:
    """The raw bytes of an Update payload file."""
    return (DATA / f"{name}.json").read_bytes()
