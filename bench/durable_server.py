"""The durable floor: the bare handler (bare_server.py) plus one row committed through Seda's
store per request (group commit in the writer process, synchronous=FULL, acknowledged after
its own commit): the message's de-duplication id, nothing else. No engine, no session, no
forwarding. What Seda's reply costs beyond this is the application's own work."""

import asyncio
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from bench.bare_server import accepted, application
from gateway.ids import system_clock
from gateway.store import StepWrite, Store


async def serve(port: int, database: Path) -> None:
    store = await Store.open(database, backends={}, clock=system_clock, writer_process=True)

    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        key = str(body.get("message_id"))
        await store.commit(StepWrite(inbound=("api", "api", key, {"status": "accepted"})))
        return accepted(body)

    runner = web.AppRunner(application(messages), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":  # the writer process is spawned: it imports this file again
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(serve(int(sys.argv[1]), Path(tmp) / "seda.db"))
