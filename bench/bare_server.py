"""The baseline: a bare aiohttp handler that parses the same JSON and answers, storing nothing."""

import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


def accepted(body: dict[str, Any]) -> web.Response:
    """The answer both baselines give."""
    return web.json_response({"status": "accepted", "echo": body.get("message_id")})


async def messages(request: web.Request) -> web.Response:
    return accepted(await request.json())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def application(
    handler: Callable[[web.Request], Awaitable[web.Response]] = messages,
) -> web.Application:
    """POST /api/v1/messages with `handler`, and /healthz."""
    app = web.Application()
    app.router.add_post("/api/v1/messages", handler)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    web.run_app(application(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
