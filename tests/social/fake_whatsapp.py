"""A fake WhatsApp Cloud (Graph) API on loopback: records every message sent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path
from typing import Any

from aiohttp import web

DATA = Path(__file__).resolve().parent.parent / "data" / "whatsapp"
APP_SECRET = "6f1e0c2b9a8d47e3b5c4a1f0e9d8c7b6"
VERIFY_TOKEN = "seda-verify-7b1c"
ACCESS_TOKEN = "EAAGfakeAccessTokenForTests0123456789"
PHONE_NUMBER_ID = "106540352242922"


class FakeGraphApi:
    """Answers POST /v21.0/{phone_number_id}/messages like the Cloud API."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.paths: list[str] = []
        self.failures: list[tuple[int, dict[str, Any], dict[str, str]] | None] = []
        self.failures_to: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self.tried: list[tuple[str, float]] = []  # (to, loop time) of every send, failed or not
        self.url = ""
        self.media: dict[str, bytes] = {}  # media id -> content (voice notes users sent)
        self.media_calls: list[str] = []  # paths of GET requests for media

    def app(self) -> web.Application:
        """The aiohttp application to serve."""
        app = web.Application()
        app.router.add_post("/v21.0/{phone_number_id}/messages", self.handle)
        app.router.add_get("/v21.0/{media_id}", self.describe)
        app.router.add_get("/whatsapp_business/attachments/", self.download)
        return app

    async def describe(self, request: web.Request) -> web.Response:
        """GET /{media_id}: where a received media file can be downloaded (for 5 minutes)."""
        self.media_calls.append(request.path)
        media_id = request.match_info["media_id"]
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return web.json_response({"error": {"code": 190}}, status=401)
        if media_id not in self.media:
            return web.json_response({"error": {"code": 100}}, status=400)
        data = self.media[media_id]
        url = f"{request.scheme}://{request.host}/whatsapp_business/attachments/?mid={media_id}"
        return web.json_response({"messaging_product": "whatsapp", "url": url, "mime_type": "audio/ogg",
                                  "sha256": hashlib.sha256(data).hexdigest(),
                                  "file_size": str(len(data)), "id": media_id})  # fmt: skip

    async def download(self, request: web.Request) -> web.Response:
        """The media file itself; the access token is required here too."""
        self.media_calls.append(request.path_qs)
        media_id = request.query.get("mid", "")
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return web.Response(status=401)
        if media_id not in self.media:
            return web.Response(status=404)
        return web.Response(body=self.media[media_id], content_type="audio/ogg")

    def fail_next(
        self, status: int, code: int, retry_after: str | None = None, *, to: str | None = None
    ) -> None:
        """Make the next send (to the number `to` only, if given) fail with a Graph API error."""
        error = {"message": f"(#{code}) failure", "type": "OAuthException", "code": code,
                 "fbtrace_id": "AbCdEf"}  # fmt: skip
        headers = {"Retry-After": retry_after} if retry_after else {}
        if to is not None:
            self.failures_to.setdefault(to, []).append((status, {"error": error}, headers))
        else:
            self.failures.append((status, {"error": error}, headers))

    def when(self, to: str) -> list[float]:
        """The loop time of every send to one number, refused or not, in order."""
        return [at for number, at in self.tried if number == to]

    def pass_next(self) -> None:
        """Let the next send succeed before the failures queued after it."""
        self.failures.append(None)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Wait until `count` messages were sent (the forwarder delivers after commit)."""
        for _ in range(250):
            if len(self.messages) >= count:
                return self.messages
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.messages)} of {count} messages were sent")

    async def handle(self, request: web.Request) -> web.Response:
        """One message send."""
        self.paths.append(request.path)
        self.authorizations.append(request.headers.get("Authorization", ""))
        body = await request.json()
        self.tried.append((str(body.get("to")), asyncio.get_running_loop().time()))
        mine = self.failures_to.get(str(body.get("to")))
        failure = mine.pop(0) if mine else self.failures.pop(0) if self.failures else None
        if failure is not None:
            status, error, headers = failure
            return web.json_response(error, status=status, headers=headers)
        self.messages.append(body)
        wamid = f"wamid.HBgMOTg5MTIxMjM0NTY3FQIAERgS{len(self.messages):06d}"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            }
        )


def payload(name: str) -> bytes:
    """The raw bytes of a webhook payload file, exactly as Meta would send them."""
    return (DATA / f"{name}.json").read_bytes()


def signature(raw: bytes, secret: str = APP_SECRET) -> str:
    """X-Hub-Signature-256 computed here, independently of the channel's code."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
