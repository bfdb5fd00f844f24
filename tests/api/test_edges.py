"""The HTTP server's edge as an outsider meets it: raw sockets on loopback against the real app."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

from gateway.bodies import BODY_TIMEOUT
from gateway.config import load
from gateway.server import create_app
from tests.conftest import write_config

JSON = {"Content-Type": "application/json"}
PHONE = "tel:+989121234567"


async def started(tmp_path: Path, aiohttp_server: Any, body_timeout: float = 0.5) -> Any:
    app: web.Application = await create_app(load(write_config(tmp_path)))
    app[BODY_TIMEOUT] = body_timeout
    return await aiohttp_server(app)


async def test_a_body_that_drips_in_is_cut_off_with_408(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """A byte now and then keeps a request open for ever (aiohttp times out idle connections
    only): many such requests would leave Seda without file descriptors."""
    server = await started(tmp_path, aiohttp_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /api/v1/messages HTTP/1.1\r\nHost: seda\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    began = time.monotonic()
    answer = asyncio.ensure_future(reader.read(4096))  # the answer, as soon as it comes
    try:
        for _ in range(40):  # 4 s of drip, a byte every 0.1 s
            await asyncio.wait([answer], timeout=0.1)
            if answer.done():
                break
            writer.write(b" ")
            await writer.drain()
        await asyncio.wait([answer], timeout=1)
    finally:
        writer.close()
        answer.cancel()
    assert answer.done() and not answer.cancelled(), "no answer while the body dripped in"
    head = answer.result()
    assert head.startswith(b"HTTP/1.1 408 "), head[:80]
    assert b"Connection: close" in head
    assert time.monotonic() - began < 2


async def test_a_slow_but_steady_body_within_the_deadline_is_served(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    server = await started(tmp_path, aiohttp_server, body_timeout=2.0)
    body = b'{"respondent": "tel:+989121234567", "text": "9"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /api/v1/messages HTTP/1.1\r\nHost: seda\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    for start in range(0, len(body), 10):
        await asyncio.sleep(0.05)
        writer.write(body[start : start + 10])
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert b'"status":"ignored"' in answer  # no survey open for this number: still served


PATHS = [b"/api/v1/messages", b"//api/v1/messages", b"/%61pi/v1/messages",
         b"/api/v1/../v1/messages", b"/x/../api/v1/messages", b"/./api/v1/messages",
         b"/API/v1/messages", b"/api/v1/messages/", b"/api%2fv1/messages",
         b"http://seda/api/v1/messages"]  # fmt: skip


async def test_no_spelling_of_an_api_path_passes_without_the_token(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """The token is checked on the decoded path; the router matches what that check saw."""
    app = await create_app(load(write_config(tmp_path, api={"token": "a-long-api-token"})))
    server = await aiohttp_server(app)
    body = b'{"respondent": "tel:+989121234567", "text": "9"}'
    for path in PATHS:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: seda\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body)
        )
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.split(b"\r\n")[0] in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 404 Not Found")


async def test_json_nested_beyond_reason_is_a_400(tmp_path: Path, aiohttp_server: Any) -> None:
    """orjson stops at 1024 levels with an error (no RecursionError reaches the handler)."""
    server = await started(tmp_path, aiohttp_server)
    async with ClientSession() as http:
        url = f"http://127.0.0.1:{server.port}/api/v1/messages"
        async with http.post(url, data="[" * 100_000, headers=JSON) as resp:
            assert resp.status == 400
            assert await resp.json() == {"error": "the body is not valid JSON"}


async def test_a_reply_of_thousands_of_digits_is_an_invalid_answer(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """4,096 keycap tens are 8,192 digits: int() refuses more than 4,300 (a 500 before)."""
    server = await started(tmp_path, aiohttp_server)
    async with ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}/api/v1"
        invitation = {"survey": "post_call_nps", "respondent": PHONE, "language": "en"}
        async with http.post(f"{base}/invitations", json=invitation) as resp:
            assert resp.status == 201
            response_id = (await resp.json())["response_id"]
        for text in ("🔟" * 4096, "9" * 19):
            reply = {"respondent": PHONE, "text": text}
            async with http.post(f"{base}/messages", json=reply) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["status"] == "rejected"
        async with http.get(f"{base}/responses/{response_id}") as resp:
            assert (await resp.json())["answers"] == []
