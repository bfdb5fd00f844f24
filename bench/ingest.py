"""Replies per second through POST /api/v1/messages, acknowledged after commit, as a ratio.

Starts the bare aiohttp handler (bench/bare_server.py) and `seda run` (SQLite,
synchronous=FULL), then drives them in alternating rounds (bare, seda, bare, seda, ...) with the
same client, so that load from other work on a shared machine falls on both alike. Prints each
side's rate, p50 and p99 latency and server CPU per reply, the ratio of every round, and seda's
overall rate as a fraction of the bare one.

    .venv/bin/python bench/ingest.py [--seconds 12] [--rounds 4] [--concurrency 64]
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
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = 10
PER_WORKER = 120  # respondents per client: nobody finishes the 10-question survey in a run


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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    """What one server did over all its rounds."""

    name: str
    pid: int
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    async def round(self, seconds: float, drive: Callable[[float], Awaitable[list[float]]]) -> None:
        """Drive this server for `seconds`; add up its replies, latencies and CPU."""
        before, started = cpu_seconds(self.pid), time.perf_counter()
        latencies = await drive(seconds)
        elapsed = time.perf_counter() - started
        self.cpu += cpu_seconds(self.pid) - before
        self.seconds += elapsed
        self.latencies += latencies
        self.rates.append(len(latencies) / elapsed)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def line(self, unit: str = "reply") -> str:
        cuts = statistics.quantiles(self.latencies, n=100)
        cpu = self.cpu / len(self.latencies) * 1e6
        return (
            f"{self.name:>6}: {self.rate:8.0f} per s   p50 {cuts[49] * 1000:6.1f} ms"
            f"   p99 {cuts[98] * 1000:6.1f} ms   server cpu {cpu:5.0f} µs per {unit}"
            f"   ({len(self.latencies)} in {self.seconds:.1f} s)"
        )


def report(bare: Side, seda: Side, unit: str = "reply") -> float:
    """Print both sides, the per-round ratios and the overall ratio; return the ratio."""
    print(bare.line(unit))
    print(seda.line(unit))
    rounds = [s / b for s, b in zip(seda.rates, bare.rates, strict=True)]
    print("rounds: " + "  ".join(f"{r:.2f}" for r in rounds))
    ratio = seda.rate / bare.rate
    print(f" ratio: {ratio:.2f} of the bare handler's rate (target >= 0.5)")
    return ratio


async def alternate(
    bare: Side,
    seda: Side,
    rounds: int,
    seconds: float,
    drive_bare: Callable[[float], Awaitable[list[float]]],
    drive_seda: Callable[[float], Awaitable[list[float]]],
) -> None:
    """`rounds` rounds of bare then seda, `seconds` in all per side."""
    for _ in range(rounds):
        await bare.round(seconds / rounds, drive_bare)
        await seda.round(seconds / rounds, drive_seda)


@contextmanager
def server(cmd: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess, stopped on the way out."""
    proc = subprocess.Popen(cmd, **kwargs)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait()


class Clients:
    """`workers` clients posting JSON replies as fast as acknowledgements come back; each
    client's position survives between rounds so that respondents move through the survey."""

    def __init__(self, url: str, workers: int, body: Callable[[int, int], dict[str, Any]]):
        self.url = url
        self.workers = workers
        self.body = body
        self.sent = [0] * workers

    async def drive(self, seconds: float) -> list[float]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=self.workers)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def worker(w: int) -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    body = self.body(w, self.sent[w])
                    async with http.post(f"{self.url}/api/v1/messages", json=body) as resp:
                        data = await resp.json()
                        if resp.status != 200 or data.get("status") != "accepted":
                            raise SystemExit(f"unexpected answer {resp.status}: {data}")
                    latencies.append(time.perf_counter() - started)
                    self.sent[w] += 1

            await asyncio.gather(*(worker(w) for w in range(self.workers)))
        return latencies


def seda_config(work: Path, port: int, channels: dict[str, Any]) -> Path:
    """A gateway.yaml for the benchmark survey in `work`, with these channels."""
    flows = work / "flows"
    shutil.copytree(ROOT / "bench/flows", flows)
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": str(work / "seda.db"),
        "flows": str(flows),
        "secret": "bench",
        "backends": {"answers_file": {"type": "jsonl", "path": str(work / "answers.jsonl")}},
        "channels": channels,
        "log": {"level": "warning"},
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def seda_command(config: Path) -> tuple[list[str], dict[str, str]]:
    """`seda run` on a config, as a subprocess command and environment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [sys.executable, "-m", "gateway.cli", "--config", str(config), "run"], env


async def invite(url: str, respondents: int) -> None:
    """Open a benchmark survey for tel:+1555000000 .. respondents - 1 (not timed)."""
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            async with sem:
                body = {"survey": "bench_nps", "respondent": f"tel:+1555{n:06d}"}
                async with http.post(f"{url}/api/v1/invitations", json=body) as resp:
                    assert resp.status == 201, await resp.text()

        await asyncio.gather(*(one(n) for n in range(respondents)))


def reply(prefix: str) -> Callable[[int, int], dict[str, Any]]:
    """Client w's i-th reply: «9» from its own respondents in turn, QUESTIONS replies each."""

    def body(w: int, i: int) -> dict[str, Any]:
        if i // QUESTIONS >= PER_WORKER:
            raise SystemExit("benchmark ran out of respondents: raise PER_WORKER")
        n = w * PER_WORKER + i // QUESTIONS
        return {"respondent": f"tel:+1555{n:06d}", "text": "9", "message_id": f"{prefix}{w}-{i}"}

    return body


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=12.0, help="per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    bare_port, seda_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cmd, env = seda_command(seda_config(Path(tmp), seda_port, {"api": {"enabled": True}}))
        bare_cmd = [sys.executable, str(ROOT / "bench/bare_server.py"), str(bare_port)]
        with server(bare_cmd) as bare_proc, server(cmd, cwd=tmp, env=env) as seda_proc:
            bare_url, seda_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{seda_port}"
            await wait_healthy(bare_url)
            await wait_healthy(seda_url)
            await invite(seda_url, args.concurrency * PER_WORKER)
            bare = Side("bare", bare_proc.pid)
            seda = Side("seda", seda_proc.pid)
            bare_clients = Clients(bare_url, args.concurrency, reply("b"))
            seda_clients = Clients(seda_url, args.concurrency, reply("s"))
            await alternate(
                bare, seda, args.rounds, args.seconds, bare_clients.drive, seda_clients.drive
            )
    report(bare, seda)


if __name__ == "__main__":
    asyncio.run(main())
