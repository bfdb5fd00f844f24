"""Replies per second through POST /api/v1/messages, acknowledged after commit, as a ratio.

Runs the bare aiohttp handler (bench/bare_server.py) and `seda run` (SQLite, synchronous=FULL)
one after the other on this machine, drives both with the same client for the same time, and
prints each rate, p50 and p99 latency, and seda's rate as a fraction of the bare one.

    .venv/bin/python bench/ingest.py [--seconds 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = 10


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"server at {url} did not start")


async def drive(
    url: str, body: Callable[[int, int], dict[str, Any]], workers: int, seconds: float
) -> tuple[int, list[float]]:
    """`workers` clients post as fast as acknowledgements come back, for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=workers)

    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(w: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.post(f"{url}/api/v1/messages", json=body(w, i)) as resp:
                    data = await resp.json()
                    if resp.status != 200 or data.get("status") != "accepted":
                        raise SystemExit(f"unexpected answer {resp.status}: {data}")
                latencies.append(time.perf_counter() - started)
                i += 1

        await asyncio.gather(*(worker(w) for w in range(workers)))
    return len(latencies), latencies


def summary(name: str, count: int, latencies: list[float], seconds: float) -> float:
    rate = count / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:>6}: {rate:8.0f} replies/s   p50 {cuts[49] * 1000:6.1f} ms"
        f"   p99 {cuts[98] * 1000:6.1f} ms   ({count} replies)"
    )
    return rate


async def bare(seconds: float, workers: int) -> tuple[int, list[float]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench/bare_server.py"), str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url)

        def body(w: int, i: int) -> dict[str, Any]:
            return {"respondent": f"tel:+1555{w:04d}", "text": "9", "message_id": f"b{w}-{i}"}

        return await drive(url, body, workers, seconds)
    finally:
        proc.terminate()
        proc.wait()


async def seda(seconds: float, workers: int, work: Path) -> tuple[int, list[float]]:
    port = free_port()
    flows = work / "flows"
    shutil.copytree(ROOT / "bench/flows", flows)
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": str(work / "seda.db"),
        "flows": str(flows),
        "secret": "bench",
        "backends": {"answers_file": {"type": "jsonl", "path": str(work / "answers.jsonl")}},
        "channels": {"api": {"enabled": True}},
        "log": {"level": "warning"},
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "gateway.cli", "--config", str(work / "gateway.yaml"), "run"]
    proc = subprocess.Popen(cmd, cwd=work, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url)
        # Enough respondents that nobody finishes the survey during the run (not timed).
        per_worker = 60
        async with aiohttp.ClientSession() as http:
            sem = asyncio.Semaphore(32)

            async def invite(n: int) -> None:
                async with sem:
                    body = {"survey": "bench_nps", "respondent": f"tel:+1555{n:06d}"}
                    async with http.post(f"{url}/api/v1/invitations", json=body) as resp:
                        assert resp.status == 201, await resp.text()

            await asyncio.gather(*(invite(n) for n in range(workers * per_worker)))

        def body(w: int, i: int) -> dict[str, Any]:
            n = w * per_worker + (i // QUESTIONS)
            if i // QUESTIONS >= per_worker:
                raise SystemExit("benchmark ran out of respondents: raise per_worker")
            return {"respondent": f"tel:+1555{n:06d}", "text": "9", "message_id": f"s{w}-{i}"}

        return await drive(url, body, workers, seconds)
    finally:
        proc.terminate()
        proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        count_b, lat_b = await bare(args.seconds, args.concurrency)
        count_s, lat_s = await seda(args.seconds, args.concurrency, Path(tmp))
    rate_b = summary("bare", count_b, lat_b, args.seconds)
    rate_s = summary("seda", count_s, lat_s, args.seconds)
    print(f" ratio: {rate_s / rate_b:.2f} of the bare handler's rate (target >= 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
