"""Signed Twilio SMS webhooks -> durable answer -> TwiML reply, as a ratio of a bare handler.

Runs a bare aiohttp handler (parses the same form, answers the same TwiML, stores nothing and
checks no signature) and `seda run` with a Twilio line (SQLite, synchronous=FULL) one after the
other on this machine, drives both with the same client and the same pre-signed requests, and
prints each rate, p50 and p99 latency, and seda's rate as a fraction of the bare one.

    .venv/bin/python bench/sms_ingest.py [--seconds 10] [--concurrency 64]
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
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import free_port, wait_healthy  # noqa: E402
from sms.twilio import signature  # noqa: E402

ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-token"
QUESTIONS = 10
PER_WORKER = 60


def bare_server(port: int) -> None:
    """The baseline, plus a stand-in Twilio Messages API for the invitations (not timed)."""
    from aiohttp import web

    async def sms(request: web.Request) -> web.Response:
        form = await request.post()
        body = "<Response><Message>Q2, 0 to 10?</Message></Response>"
        assert form.get("MessageSid")
        return web.Response(text=body, content_type="application/xml")

    async def api(request: web.Request) -> web.Response:
        await request.post()
        return web.json_response({"sid": "SM" + "0" * 32}, status=201)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/sms/main", sms)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", api)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def signed_requests(public: str, workers: int) -> list[list[tuple[bytes, str]]]:
    """Per worker, one signed form per reply (signed in advance: client cost is not timed)."""
    out = []
    for w in range(workers):
        mine = []
        for i in range(PER_WORKER * QUESTIONS):
            n = w * PER_WORKER + i // QUESTIONS
            params = {"MessageSid": f"SM{w:04d}{i:028d}", "AccountSid": ACCOUNT,
                      "From": f"+1555{n:06d}", "To": "+15550000000", "Body": "9"}  # fmt: skip
            mine.append((urlencode(params).encode(), signature(public, params.items(), TOKEN)))
        out.append(mine)
    return out


async def drive(url: str, requests: list[list[tuple[bytes, str]]], seconds: float) -> list[float]:
    """Each worker posts its next signed webhook as soon as the last one is answered."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    connector = aiohttp.TCPConnector(limit=len(requests))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(mine: list[tuple[bytes, str]]) -> None:
            for body, sig in mine:
                if time.perf_counter() >= deadline:
                    return
                started = time.perf_counter()
                sent = {**headers, "X-Twilio-Signature": sig}
                async with http.post(f"{url}/sms/main", data=body, headers=sent) as resp:
                    text = await resp.text()
                    if resp.status != 200 or "<Response>" not in text:  # no closing: empty
                        raise SystemExit(f"unexpected answer {resp.status}: {text[:200]}")
                latencies.append(time.perf_counter() - started)
            raise SystemExit("benchmark ran out of respondents: raise PER_WORKER")

        await asyncio.gather(*(worker(mine) for mine in requests))
    return latencies


def summary(name: str, latencies: list[float], seconds: float) -> float:
    """Print one line of results; returns the rate."""
    rate = len(latencies) / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:>6}: {rate:8.0f} webhooks/s   p50 {cuts[49] * 1000:6.1f} ms"
        f"   p99 {cuts[98] * 1000:6.1f} ms   ({len(latencies)} webhooks)"
    )
    return rate


async def run(seconds: float, workers: int, work: Path) -> tuple[list[float], list[float]]:
    """Start the bare server (also the fake Twilio API), measure it, then measure seda."""
    bare_port, seda_port = free_port(), free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare", str(bare_port)])
    seda = None
    try:
        bare_url = f"http://127.0.0.1:{bare_port}"
        await wait_healthy(bare_url)
        lat_bare = await drive(bare_url, signed_requests(f"{bare_url}/sms/main", workers), seconds)
        shutil.copytree(ROOT / "bench/flows", work / "flows")
        public = f"http://127.0.0.1:{seda_port}/sms/main"
        line = {"provider": "twilio", "number": "+15550000000", "account_sid": ACCOUNT,
                "auth_token": TOKEN, "base_url": bare_url, "public_url": public}  # fmt: skip
        config = {
            "server": {"host": "127.0.0.1", "port": seda_port},
            "database": str(work / "seda.db"),
            "flows": str(work / "flows"),
            "secret": "bench",
            "backends": {"answers_file": {"type": "jsonl", "path": str(work / "answers.jsonl")}},
            "channels": {"api": {"enabled": True}, "sms": {"lines": {"main": line}}},
            "log": {"level": "warning"},
        }
        (work / "gateway.yaml").write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "gateway.cli", "--config", str(work / "gateway.yaml"), "run"]
        seda = subprocess.Popen(cmd, cwd=work, env=env)
        seda_url = f"http://127.0.0.1:{seda_port}"
        await wait_healthy(seda_url)
        await invite_all(seda_url, workers * PER_WORKER)
        lat_seda = await drive(seda_url, signed_requests(public, workers), seconds)
        return lat_bare, lat_seda
    finally:
        for proc in (bare, seda):
            if proc is not None:
                proc.terminate()
                proc.wait()


async def invite_all(url: str, count: int) -> None:
    """One SMS invitation per respondent (not timed)."""
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def invite(n: int) -> None:
            async with sem:
                body = {"survey": "bench_nps", "respondent": f"tel:+1555{n:06d}",
                        "channel": "sms", "line": "main"}  # fmt: skip
                async with http.post(f"{url}/api/v1/invitations", json=body) as resp:
                    assert resp.status == 201, await resp.text()

        await asyncio.gather(*(invite(n) for n in range(count)))


def main() -> None:
    """Parse arguments, run both servers, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_server(args.bare)
        return
    with tempfile.TemporaryDirectory() as tmp:
        lat_b, lat_s = asyncio.run(run(args.seconds, args.concurrency, Path(tmp)))
    rate_b = summary("bare", lat_b, args.seconds)
    rate_s = summary("seda", lat_s, args.seconds)
    print(f" ratio: {rate_s / rate_b:.2f} of the bare handler's rate")


if __name__ == "__main__":
    main()
