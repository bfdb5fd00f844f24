"""How far durability alone is from the bare handler: bench/durable_server.py (the bare handler
plus one group-committed row per request through Seda's store) against bench/bare_server.py,
in alternating rounds with ingest.py's client. A diagnostic, with no target of its own: it
tells how much of `ingest`'s gap is the durable write and how much is the rest of the reply.

    .venv/bin/python bench/floor.py [--seconds 12] [--rounds 4] [--concurrency 64]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    Clients,
    Side,
    alternate,
    free_port,
    options,
    reply,
    report,
    server,
    wait_healthy,
)


async def main() -> None:
    args = options(__doc__).parse_args()
    bare_port, floor_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bare_cmd = [sys.executable, str(ROOT / "bench/bare_server.py"), str(bare_port)]
    floor_cmd = [sys.executable, str(ROOT / "bench/durable_server.py"), str(floor_port)]
    with server(bare_cmd) as bare_proc, server(floor_cmd, env=env) as floor_proc:
        bare_url, floor_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{floor_port}"
        await wait_healthy(bare_url)
        await wait_healthy(floor_url)
        bare, floor = Side("bare", bare_proc.pid), Side("floor", floor_proc.pid)
        await alternate(
            bare,
            floor,
            args.rounds,
            args.seconds,
            Clients(f"{bare_url}/api/v1/messages", args.concurrency, reply("b")).drive,
            Clients(f"{floor_url}/api/v1/messages", args.concurrency, reply("f")).drive,
        )
    report(bare, floor, target=None)


if __name__ == "__main__":
    asyncio.run(main())
