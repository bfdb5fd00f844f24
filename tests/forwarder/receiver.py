"""A CEM playing the webhook receiver on loopback: records and verifies what Seda sends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Received:
    """One request as it arrived, with the receiver's own signature check."""

    index: int
    webhook_id: str
    timestamp: str
    signature: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    problem: str | None = None  # why the signature did not verify
    answered: int | None = None  # the status the receiver answered (None: no answer sent)
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


Answer = tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes]  # status, headers, body
Behaviour = Callable[[Received], Awaitable[Answer]]


async def accept(_: Received) -> Answer:
    return 200, {}


def key_of(secret: str) -> bytes:
    """A `whsec_` secret's HMAC key, as the spec serialises it: base64 after the prefix (the
    reference verifier also takes it unpadded). Written from the spec, not from gateway code."""
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def verify(
    key: bytes, headers: Mapping[str, str], body: bytes, now: float, tolerance: float = 300
) -> str | None:
    """Standard Webhooks verification written from the spec, independent of gateway code:
    None if the request verifies, else why not."""
    lower = {k.lower(): v for k, v in headers.items()}
    webhook_id = lower.get("webhook-id", "")
    timestamp = lower.get("webhook-timestamp", "")
    header = lower.get("webhook-signature", "")
    if not (webhook_id and timestamp and header):
        return "missing header"
    if "." in webhook_id:
        return "a '.' in webhook-id makes the signed content ambiguous"
    if not (timestamp.isascii() and timestamp.isdigit()):
        return "webhook-timestamp is not integer unix seconds"
    if abs(now - int(timestamp)) > tolerance:
        return "webhook-timestamp outside the tolerance"
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for candidate in header.split(" "):  # several during a secret rotation
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return None
    return "no matching signature"


@dataclass
class Receiver:
    """Runs an aiohttp app on 127.0.0.1 with a random port; `behaviour` decides each answer."""

    secret: str | None = None  # whsec_...: requests are verified with it
    behaviour: Behaviour = accept
    now: Callable[[], float] = time.time  # the receiver's clock, for the timestamp tolerance
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/hook"))

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    async def hang(self, _: Received) -> Answer:
        """Answer nothing until released (or 5 s), then 503."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), 5)
        return 503, {}

    def ids(self, status: int | None = None) -> list[str]:
        """webhook-ids in arrival order, optionally only of requests answered `status`."""
        return [r.webhook_id for r in self.requests if status is None or r.answered == status]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        signature = request.headers.get("webhook-signature", "")
        key = None if self.secret is None else key_of(self.secret)
        problem = "no secret" if key is None else verify(key, request.headers, body, self.now())
        received = Received(
            index=len(self.requests),
            webhook_id=webhook_id,
            timestamp=timestamp,
            signature=signature,
            headers=dict(request.headers),
            body=body,
            signature_ok=problem is None,
            problem=problem,
        )
        self.requests.append(received)
        status, headers, *body = await self.behaviour(received)
        received.answered = status
        return web.Response(status=status, headers=headers, body=body[0] if body else None)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
