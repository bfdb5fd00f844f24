"""Telegram updates per second through POST /telegram/{bot}, acknowledged after commit, as a ratio.

Runs a bare aiohttp handler (checks the secret header, parses the update, answers 200, stores
nothing) and `seda run` with one Telegram bot whose Bot API is a fake on loopback (answering
getMe and the sendMessage of every prompt the forwarder sends meanwhile), one after the other
on this machine; drives both with the same client for the same time and prints each rate,
p50 and p99 latency, and seda's rate as a fraction of the bare one.

    .venv/bin/python bench/telegram_ingest.py [--seconds 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.ingest import QUESTIONS, free_port, summary, wait_healthy  # noqa: E402

TOKEN = "7000000001:AAbenchmarkTokenNotARealOne_0123456"
SECRET = "bench-secret"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
PER_WORKER = 60  # respondents per client: nobody finishes the survey during the run


def update(chat: int, update_id: int) -> dict[str, Any]:
    """A private text message «9», shaped like a real Telegram update."""
    user = {"id": chat, "is_bot": False, "first_name": "Bench", "language_code": "en"}
    message = {"message_id": update_id, "from": user, "date": 1767225600, "text": "9",
               "chat": {"id": chat, "first_name": "Bench", "type": "private"}}  # fmt: skip
    return {"update_id": update_id, "message": message}


def serve_bare(port: int) -> None:
    """The baseline: the same route, secret check and JSON parse, storing nothing."""

    async def webhook(request: web.Request) -> web.Response:
        if request.headers.get(HEADER) != SECRET:
            return web.json_response({"status": "rejected"}, status=403)
        body = await request.json()
        return web.json_response({"status": "accepted", "update": body.get("update_id")})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/telegram/{bot}", webhook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_bot_api(port: int) -> None:
    """A fake Bot API: getMe, sendMessage (counted), and GET /stats for the count."""
    sent = [0]

    async def call(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "getMe":
            bot = {"id": 7000000001, "is_bot": True, "first_name": "Bench", "username": "b_bot"}
            return web.json_response({"ok": True, "result": bot})
        if method == "sendMessage":
            sent[0] += 1
            form = await request.post()
            chat = {"id": int(str(form["chat_id"])), "type": "private"}
            result = {"message_id": sent[0], "date": 1767225600, "chat": chat, "text": "ok"}
            return web.json_response({"ok": True, "result": result})
        return web.json_response({"ok": True, "result": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"sendMessage": sent[0]})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", call)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def drive(
    url: str, workers: int, seconds: float, chat_base: int, stateful: bool = True
) -> tuple[list[float], int]:
    """`workers` clients post updates as fast as acknowledgements come back, for `seconds`;
    the latencies, and how many of the updates were a survey's last answer."""
    latencies: list[float] = []
    last_answers = [0]
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(w: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                respondent = i // QUESTIONS
                if respondent >= PER_WORKER and stateful:
                    raise SystemExit("benchmark ran out of respondents: raise PER_WORKER")
                chat = chat_base + w * PER_WORKER + respondent % PER_WORKER
                body = update(chat, 1_000_000 + w * 100_000 + i)
                started = time.perf_counter()
                async with http.post(url, json=body, headers={HEADER: SECRET}) as resp:
                    data = await resp.json()
                    if resp.status != 200 or data.get("status") != "accepted":
                        raise SystemExit(f"unexpected answer {resp.status}: {data}")
                latencies.append(time.perf_counter() - started)
                last_answers[0] += i % QUESTIONS == QUESTIONS - 1
                i += 1

        await asyncio.gather(*(worker(w) for w in range(workers)))
    return latencies, last_answers[0]


def spawn(*args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env)


async def bare(seconds: float, workers: int) -> list[float]:
    port = free_port()
    proc = spawn(__file__, "--serve-bare", str(port))
    try:
        await wait_healthy(f"http://127.0.0.1:{port}")
        latencies, _ = await drive(
            f"http://127.0.0.1:{port}/telegram/bench", workers, seconds, 0, False
        )
        return latencies
    finally:
        proc.terminate()
        proc.wait()


async def seda(seconds: float, workers: int, work: Path) -> tuple[list[float], int]:
    api_port, port = free_port(), free_port()
    fake = spawn(__file__, "--serve-bot-api", str(api_port))
    flows = work / "flows"
    shutil.copytree(ROOT / "bench/flows", flows)
    bot = {"token": TOKEN, "secret": SECRET, "base_url": f"http://127.0.0.1:{api_port}/bot"}
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": str(work / "seda.db"),
        "flows": str(flows),
        "secret": "bench",
        "backends": {"answers_file": {"type": "jsonl", "path": str(work / "answers.jsonl")}},
        "channels": {
            "api": {"enabled": True},
            "telegram": {"enabled": True, "bots": {"bench": bot}},
        },
        "log": {"level": "warning"},
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    proc = spawn("-m", "gateway.cli", "--config", str(work / "gateway.yaml"), "run", cwd=work)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(f"http://127.0.0.1:{api_port}")
        await wait_healthy(url)
        respondents = workers * PER_WORKER
        async with aiohttp.ClientSession() as http:  # not timed: start everyone's survey
            sem = asyncio.Semaphore(32)

            async def invite(n: int) -> None:
                body = {"survey": "bench_nps", "respondent": f"telegram:{200_000 + n}",
                        "channel": "telegram"}  # fmt: skip
                async with sem, http.post(f"{url}/api/v1/invitations", json=body) as resp:
                    assert resp.status == 201, await resp.text()

            await asyncio.gather(*(invite(n) for n in range(respondents)))
            await sent_at_least(http, api_port, respondents)  # the invitations are out
            latencies, last = await drive(f"{url}/telegram/bench", workers, seconds, 200_000)
            # Every update gets its next prompt, but a survey's last answer (bench_nps has no
            # closing message): check that the forwarder sent them all.
            prompts = respondents + len(latencies) - last
            await sent_at_least(http, api_port, prompts)
            return latencies, prompts
    finally:
        proc.terminate()
        proc.wait()
        fake.terminate()
        fake.wait()


async def sent_at_least(http: aiohttp.ClientSession, api_port: int, count: int) -> None:
    """Wait until the fake Bot API received `count` sendMessage calls."""
    got = 0
    for _ in range(1200):
        async with http.get(f"http://127.0.0.1:{api_port}/stats") as resp:
            got = (await resp.json())["sendMessage"]
            if got >= count:
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"{got} of {count} prompts reached the fake Bot API")


async def main(seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lat_b = await bare(seconds, concurrency)
        lat_s, prompts = await seda(seconds, concurrency, Path(tmp))
    rate_b = summary("bare", len(lat_b), lat_b, seconds)
    rate_s = summary("seda", len(lat_s), lat_s, seconds)
    print(f"        {prompts} prompts reached the fake Bot API (invitations + one per update)")
    print(f" ratio: {rate_s / rate_b:.2f} of the bare handler's rate")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bot-api", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
    elif args.serve_bot_api:
        serve_bot_api(args.serve_bot_api)
    else:
        asyncio.run(main(args.seconds, args.concurrency))


if __name__ == "__main__":
    cli()
