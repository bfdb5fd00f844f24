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
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = 10
PER_WORKER = 400  # respondents per client: enough for a fast machine's bare rounds (7,000/s)


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
    """User plus system CPU time so far of a process, all its threads and all the processes it
    started that are still running (seda's store writer, voice pool...), from Linux /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, family = 0.0, {pid}
    for candidate in sorted(times):  # a child's pid may be lower than its parent's: walk up
        ancestor = candidate
        while ancestor not in family and ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor in family:
            family.add(candidate)
            total += times[candidate]
    return total


@dataclass
class Side:
    """What one server did over all its rounds."""

    name: str
    pid: int
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    async def round(
        self,
        seconds: float,
        drive: Callable[[float], Awaitable[list[float]]],
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Drive this server for `seconds`; add up its replies, latencies and CPU. `settle`, if
        given, waits out the work the round left running in the background: its CPU counts
        towards the round, its time does not."""
        before, started = cpu_seconds(self.pid), time.perf_counter()
        latencies = await drive(seconds)
        elapsed = time.perf_counter() - started
        if settle is not None:
            await settle()
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


def report(bare: Side, seda: Side, unit: str = "reply", target: float | None = 0.5) -> float:
    """Print both sides, the per-round ratios and the overall ratio (and the issue's target,
    where it sets one); return the ratio."""
    print(bare.line(unit))
    print(seda.line(unit))
    rounds = [s / b for s, b in zip(seda.rates, bare.rates, strict=True)]
    print("rounds: " + "  ".join(f"{r:.2f}" for r in rounds))
    ratio = seda.rate / bare.rate
    goal = f" (target >= {target})" if target is not None else ""
    print(f" ratio: {ratio:.2f} of the bare handler's rate{goal}")
    return ratio


async def alternate(
    bare: Side,
    seda: Side,
    rounds: int,
    seconds: float,
    drive_bare: Callable[[float], Awaitable[list[float]]],
    drive_seda: Callable[[float], Awaitable[list[float]]],
    settle_seda: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """`rounds` rounds of bare then seda, `seconds` in all per side; `settle_seda` after every
    seda round keeps its background work out of the next bare round (see Side.round)."""
    for _ in range(rounds):
        await bare.round(seconds / rounds, drive_bare)
        await seda.round(seconds / rounds, drive_seda, settle_seda)


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
    """`workers` clients posting JSON replies to `url` as fast as acknowledgements come back;
    each client's position survives between rounds so that respondents move through the survey.
    A subclass changes what the clients share in a round (`session`) and what one sends (`send`).
    """

    def __init__(
        self,
        url: str,
        workers: int,
        body: Callable[[int, int], Any],
        headers: dict[str, str] | None = None,
    ):
        self.url = url
        self.workers = workers
        self.body = body
        self.headers = headers or {}
        self.sent = [0] * workers

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """What the clients share for one round: a pool of `workers` HTTP connections."""
        connector = aiohttp.TCPConnector(limit=self.workers)
        async with aiohttp.ClientSession(connector=connector) as http:
            yield http

    async def send(self, http: Any, w: int, i: int) -> None:
        """Client w's i-th reply, and a check of its acknowledgement."""
        async with http.post(self.url, json=self.body(w, i), headers=self.headers) as resp:
            data = await resp.json()
            if resp.status != 200 or data.get("status") != "accepted":
                raise SystemExit(f"unexpected answer {resp.status}: {data}")

    async def drive(self, seconds: float) -> list[float]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        async with self.session() as shared:

            async def worker(w: int) -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    await self.send(shared, w, self.sent[w])
                    latencies.append(time.perf_counter() - started)
                    self.sent[w] += 1

            await asyncio.gather(*(worker(w) for w in range(self.workers)))
        return latencies


def respondent(w: int, i: int) -> int:
    """Whose is client w's i-th reply: its own PER_WORKER respondents in turn, QUESTIONS each."""
    if i // QUESTIONS >= PER_WORKER:
        raise SystemExit("benchmark ran out of respondents: raise PER_WORKER")
    return w * PER_WORKER + i // QUESTIONS


def serve(port: int, routes: list[web.RouteDef]) -> None:
    """A bare handler or a fake provider API: these routes and GET /healthz, on loopback."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([*routes, web.get("/healthz", healthz)])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def options(doc: str | None, concurrency: int = 64) -> argparse.ArgumentParser:
    """The command line every ingest benchmark takes; a bench adds its own options to it."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--seconds", type=float, default=12.0, help="per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument(
        "--store-writer",
        choices=("process", "thread"),
        default="process",
        help="where seda's group commits run (its store_writer setting)",
    )
    return parser


def seda_config(
    work: Path, port: int, channels: dict[str, Any], store_writer: str = "process"
) -> Path:
    """A gateway.yaml for the benchmark survey in `work`, with these channels."""
    flows = work / "flows"
    shutil.copytree(ROOT / "bench/flows", flows)
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": str(work / "seda.db"),
        "store_writer": store_writer,
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


@contextmanager
def seda_server(
    work: Path, port: int, channels: dict[str, Any], store_writer: str = "process"
) -> Iterator[subprocess.Popen[bytes]]:
    """`seda run` in `work` with these channels (see seda_config), stopped on the way out."""
    cmd, env = seda_command(seda_config(work, port, channels, store_writer))
    with server(cmd, cwd=work, env=env) as proc:
        yield proc


def tel(n: int) -> dict[str, Any]:
    """The invitation of respondent n: tel:+1555000000 + n, on the default channel."""
    return {"survey": "bench_nps", "respondent": f"tel:+1555{n:06d}"}


async def invite(
    url: str, respondents: int, body: Callable[[int], dict[str, Any]] = tel
) -> list[dict[str, Any]]:
    """Open the benchmark survey for respondents 0 .. respondents - 1 (not timed); the answers."""
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def one(n: int) -> dict[str, Any]:
            async with sem, http.post(f"{url}/api/v1/invitations", json=body(n)) as resp:
                assert resp.status == 201, await resp.text()
                data: dict[str, Any] = await resp.json()
                return data

        return list(await asyncio.gather(*(one(n) for n in range(respondents))))


async def drained(url: str) -> None:
    """Wait until seda's outbox is empty: every answer and prompt delivered."""
    async with aiohttp.ClientSession() as http:
        for _ in range(1200):
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            depths = re.findall(r"^seda_outbox_depth\{[^}]*\} (\S+)$", text, re.MULTILINE)
            if not any(float(depth) for depth in depths):
                return
            await asyncio.sleep(0.1)
    raise SystemExit(f"seda at {url} did not empty its outbox in two minutes")


def reply(prefix: str) -> Callable[[int, int], dict[str, Any]]:
    """Client w's i-th reply: «9» from its own respondents in turn, QUESTIONS replies each."""

    def body(w: int, i: int) -> dict[str, Any]:
        n = respondent(w, i)
        return {"respondent": f"tel:+1555{n:06d}", "text": "9", "message_id": f"{prefix}{w}-{i}"}

    return body


async def main() -> None:
    args = options(__doc__).parse_args()
    bare_port, seda_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        bare_cmd = [sys.executable, str(ROOT / "bench/bare_server.py"), str(bare_port)]
        seda_cm = seda_server(Path(tmp), seda_port, {"api": {"enabled": True}}, args.store_writer)
        with server(bare_cmd) as bare_proc, seda_cm as seda_proc:
            bare_url, seda_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{seda_port}"
            await wait_healthy(bare_url)
            await wait_healthy(seda_url)
            await invite(seda_url, args.concurrency * PER_WORKER)
            bare = Side("bare", bare_proc.pid)
            seda = Side("seda", seda_proc.pid)
            bare_clients = Clients(f"{bare_url}/api/v1/messages", args.concurrency, reply("b"))
            seda_clients = Clients(f"{seda_url}/api/v1/messages", args.concurrency, reply("s"))
            await alternate(
                bare, seda, args.rounds, args.seconds, bare_clients.drive, seda_clients.drive
            )
    report(bare, seda)


if __name__ == "__main__":
    asyncio.run(main())
