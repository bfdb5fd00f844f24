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


METHODS = {name.lower(): name for name in ("getMe", "sendMessage", "answerCallbackQuery",
           "setWebhook", "deleteWebhook", "getUpdates", "getFile")}  # fmt: skip


class FakeBotApi:
    """Answers getMe, sendMessage, answerCallbackQuery, setWebhook, deleteWebhook, getUpdates."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.times: list[tuple[str, Any, float]] = []  # (method, chat_id, loop time) of each call
        self.failures: dict[str, list[tuple[int, dict[str, Any]] | None]] = {}
        self.updates: list[dict[str, Any]] = []
        self.tokens: list[tuple[str, str]] = []  # (method, token) of every call
        self.files: dict[str, bytes] = {}  # file_id -> content, for getFile and downloads
        self.downloads: list[str] = []  # file paths fetched from /file/bot<token>/<path>
        self.file_sizes = True  # getFile tells the size (it may leave it out)
        self.url = ""
        self._message_id = 100

    def app(self) -> web.Application:
        """The aiohttp application to serve."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self.download)
        return app

    async def download(self, request: web.Request) -> web.Response:
        """A file by the path getFile gave (only with the bot's token, as Telegram does)."""
        path = request.match_info["path"]
        self.downloads.append(path)
        file_id = path.removeprefix("voice/").removesuffix(".oga")
        if request.match_info["token"] != TOKEN or file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="audio/ogg")

    def sent(self, method: str, chat_id: str | None = None) -> list[dict[str, Any]]:
        """The parameters of every call of one method (to one chat, if given), in order."""
        return [
            params
            for name, params in self.calls
            if name == method and (chat_id is None or params.get("chat_id") == chat_id)
        ]

    def when(self, method: str, chat_id: str | None = None) -> list[float]:
        """The loop time of every call of one method (to one chat, if given), in order."""
        return [
            at
            for name, chat, at in self.times
            if name == method and (chat_id is None or chat == chat_id)
        ]

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        *,
        chat_id: str | None = None,
        **parameters: Any,
    ) -> None:
        """Make the next call of `method` (to `chat_id` only, if given) fail like Telegram."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        key = method if chat_id is None else f"{method}:{chat_id}"
        self.failures.setdefault(key, []).append((status, body))

    def pass_next(self, method: str) -> None:
        """Let the next call of `method` succeed before the failures queued after it."""
        self.failures.setdefault(method, []).append(None)

    async def wait_for(
        self, method: str, count: int, chat_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Wait until `method` was called `count` times (the forwarder delivers after commit)."""
        for _ in range(250):
            if len(self.sent(method, chat_id)) >= count:
                return self.sent(method, chat_id)
            await asyncio.sleep(0.02)
        got = len(self.sent(method, chat_id))
        raise AssertionError(f"{method}: {got} of {count} calls arrived")

    async def handle(self, request: web.Request) -> web.Response:
        """One Bot API call."""
        method = request.match_info["method"]
        method = METHODS.get(method.lower(), method)  # the Bot API ignores case in method names
        self.tokens.append((method, request.match_info["token"]))
        params = {k: _decoded(v) for k, v in (await request.post()).items()}
        self.calls.append((method, params))
        self.times.append((method, params.get("chat_id"), asyncio.get_running_loop().time()))
        failures = self.failures.get(f"{method}:{params.get('chat_id')}") or self.failures.get(
            method
        )
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
        if method == "getFile":
            file_id = str(params.get("file_id"))
            if file_id not in self.files:
                raise web.HTTPBadRequest(
                    text=json.dumps({"ok": False, "error_code": 400,
                                     "description": "Bad Request: invalid file_id"}),
                    content_type="application/json",
                )  # fmt: skip
            found = {"file_id": file_id, "file_unique_id": f"u{file_id[-8:]}",
                     "file_path": f"voice/{file_id}.oga"}  # fmt: skip
            if self.file_sizes:
                found["file_size"] = len(self.files[file_id])
            return found
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
