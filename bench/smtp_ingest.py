"""Email replies per second through Seda's SMTP server, acknowledged after commit, as a ratio.

Runs a bare aiosmtpd server whose handler discards every message (the same SMTP class, served
the same way, on its own process) and then `seda run` with the email channel (SQLite,
synchronous=FULL, the next question mailed out through a discarding relay for every answer).
The same client drives both for the same time over persistent connections, and the script
prints each rate, p50 and p99 latency, and Seda's rate as a fraction of the bare one.

    .venv/bin/python bench/smtp_ingest.py [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import aiosmtplib
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from email_in.tokens import Tokens  # noqa: E402

QUESTIONS = 10  # bench/flows/bench_nps.yaml
SECRET = "bench-token-secret-0123456789"
DOMAIN = "reply.bench"
Message = Callable[[int, int], tuple[str, bytes]]  # (worker, i) -> (recipient, message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_bare(port: int) -> None:
    """The baseline (and the relay of Seda's own mail): aiosmtpd that discards everything."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Discard:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            return "250 2.0.0 OK accepted"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = Discard()

        def protocol() -> SMTP:
            return SMTP(handler, hostname="bare.bench", ident="bare", loop=loop)

        server = await loop.create_server(protocol, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def reply(recipient: str, message_id: str) -> bytes:
    """A short plain-text reply with a quote, as most replies look."""
    return (
        f"From: respondent@bench.example\r\nTo: {recipient}\r\nSubject: Re: A short survey\r\n"
        f"Message-ID: <{message_id}@bench.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\n9\r\n\r\n'
        f"On Mon, 6 Jan 2025 at 10:02, Seda <{recipient}> wrote:\r\n> Q1, 0 to 10?\r\n"
    ).encode()


async def wait_port(port: int) -> None:
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


async def drive(port: int, message: Message, workers: int, seconds: float) -> list[float]:
    """`workers` SMTP connections send as fast as 250s come back, for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=False, local_hostname="client.bench"
        )
        await client.connect()
        i = 0
        while time.perf_counter() < deadline:
            recipient, raw = message(w, i)
            started = time.perf_counter()
            _, answer = await client.sendmail("respondent@bench.example", [recipient], raw)
            if "accepted" not in answer:
                raise SystemExit(f"unexpected answer: {answer}")
            latencies.append(time.perf_counter() - started)
            i += 1
        await client.quit()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return latencies


def summary(name: str, latencies: list[float], seconds: float) -> float:
    rate = len(latencies) / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:>6}: {rate:8.0f} messages/s   p50 {cuts[49] * 1000:6.1f} ms"
        f"   p99 {cuts[98] * 1000:6.1f} ms   ({len(latencies)} messages)"
    )
    return rate


def spawn_bare(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--bare", str(port)])


async def bare(seconds: float, workers: int) -> list[float]:
    port = free_port()
    proc = spawn_bare(port)
    try:
        await wait_port(port)
        recipient = f"anyone@{DOMAIN}"
        return await drive(
            port, lambda w, i: (recipient, reply(recipient, f"b{w}-{i}")), workers, seconds
        )
    finally:
        proc.terminate()
        proc.wait()


async def outbox_depth(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    found = re.search(r'seda_outbox_depth\{backend="channel.email"\} (\S+)', text)
    return int(float(found.group(1))) if found else 0


async def seda(seconds: float, workers: int, per_worker: int, work: Path) -> list[float]:
    http_port, smtp_port, relay_port = free_port(), free_port(), free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": http_port},
        "database": str(work / "seda.db"),
        "flows": str(ROOT / "bench/flows"),
        "secret": "bench",
        "backends": {"answers_file": {"type": "jsonl", "path": str(work / "answers.jsonl")}},
        "channels": {
            "api": {"enabled": True},
            "email": {
                "port": smtp_port,
                "reply_domain": DOMAIN,
                "token_secret": SECRET,
                "from": "Seda <surveys@bench.example>",
                "relay": {"host": "127.0.0.1", "port": relay_port, "starttls": False},
                "link_base": f"http://127.0.0.1:{http_port}",
            },
        },
        "log": {"level": "warning"},
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    relay = spawn_bare(relay_port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "gateway.cli", "--config", str(work / "gateway.yaml"), "run"]
    proc = subprocess.Popen(cmd, cwd=work, env=env)
    try:
        await wait_port(relay_port)
        await wait_port(smtp_port)
        url = f"http://127.0.0.1:{http_port}"
        tokens = Tokens(SECRET.encode())
        recipients: list[str] = []
        async with aiohttp.ClientSession() as http:
            sem = asyncio.Semaphore(32)

            async def invite(n: int) -> str:
                address = f"mailto:r{n}@bench.example"
                body = {"survey": "bench_nps", "respondent": address, "channel": "email"}
                async with sem, http.post(f"{url}/api/v1/invitations", json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    rid = (await resp.json())["response_id"]
                return tokens.address("survey", rid, DOMAIN)

            count = workers * per_worker
            recipients = list(await asyncio.gather(*(invite(n) for n in range(count))))
            while await outbox_depth(http, url) > 0:  # the invitations out first (not timed)
                await asyncio.sleep(0.2)

        def message(w: int, i: int) -> tuple[str, bytes]:
            if i // QUESTIONS >= per_worker:
                raise SystemExit("benchmark ran out of respondents: raise --per-worker")
            recipient = recipients[w * per_worker + i // QUESTIONS]
            return recipient, reply(recipient, f"s{w}-{i}")

        return await drive(smtp_port, message, workers, seconds)
    finally:
        proc.terminate()
        proc.wait()
        relay.terminate()
        relay.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--per-worker", type=int, default=60, help="respondents per connection")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lat_b = await bare(args.seconds, args.concurrency)
        lat_s = await seda(args.seconds, args.concurrency, args.per_worker, Path(tmp))
    rate_b = summary("bare", lat_b, args.seconds)
    rate_s = summary("seda", lat_s, args.seconds)
    print(f" ratio: {rate_s / rate_b:.2f} of the bare handler's rate (target >= 0.5)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        serve_bare(int(sys.argv[2]))
    else:
        asyncio.run(main())
