"""The baseline: a bare aiohttp handler that parses the same JSON and answers, storing nothing."""

import sys

from aiohttp import web


async def messages(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"status": "accepted", "echo": body.get("message_id")})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


app = web.Application()
app.router.add_post("/api/v1/messages", messages)
app.router.add_get("/healthz", healthz)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
