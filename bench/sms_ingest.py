"""Signed Twilio SMS webhooks -> durable answer -> TwiML reply, as a ratio of a bare handler.

Compares a bare aiohttp handler (parses the same form, answers the same TwiML, stores nothing and
checks no signature) with `seda run` with a Twilio line (SQLite, synchronous=FULL), both fed the
same pre-signed requests by the same client. Starts both, then drives them in alternating rounds
(bare, seda, bare, seda, ...), so that load from other work on a shared machine falls on both
alike; after every seda round, untimed, it waits until seda's outbox is empty (its CPU for that
counts towards seda's webhooks). Prints each side's rate, p50 and p99 latency and server CPU per
webhook, the ratio of every round and seda's overall rate as a fraction of the bare one.

Then it offers seda a fixed load of half that measured rate for --paced-seconds, open loop (a
webhook starts every 1/rate seconds whether or not the earlier ones are answered, as Twilio
sends them), and prints the p99 latency there, counted from when each webhook was due.

    .venv/bin/python bench/sms_ingest.py [--seconds 12] [--rounds 4] [--concurrency 64]
                                         [--paced-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    PER_WORKER,
    QUESTIONS,
    Clients,
    Side,
    alternate,
    drained,
    free_port,
    invite,
    options,
    report,
    respondent,
    seda_server,
    serve,
    server,
    tel,
    wait_healthy,
)
from sms.twilio import signature  # noqa: E402

ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-token"
Signed = tuple[bytes, str]  # a form body and its X-Twilio-Signature


def bare_server(port: int) -> None:
    """The baseline, plus a stand-in Twilio Messages API for the invitations (not timed)."""

    async def sms(request: web.Request) -> web.Response:
        form = await request.post()
        body = "<Response><Message>Q2, 0 to 10?</Message></Response>"
        assert form.get("MessageSid")
        return web.Response(text=body, content_type="application/xml")

    async def api(request: web.Request) -> web.Response:
        await request.post()
        return web.json_response({"sid": "SM" + "0" * 32}, status=201)

    serve(
        port,
        [web.post("/sms/main", sms), web.post("/2010-04-01/Accounts/{sid}/Messages.json", api)],
    )


def signed_requests(public: str, workers: int) -> Callable[[int, int], Signed]:
    """Client w's i-th webhook, from its own respondents in turn, QUESTIONS each; all signed in
    advance, so that signing is not timed."""

    def form(w: int, i: int) -> Signed:
        sender = f"+1555{respondent(w, i):06d}"
        params = {"MessageSid": f"SM{w:04d}{i:028d}", "AccountSid": ACCOUNT,
                  "From": sender, "To": "+15550000000", "Body": "9"}  # fmt: skip
        return urlencode(params).encode(), signature(public, params.items(), TOKEN)

    signed = [[form(w, i) for i in range(PER_WORKER * QUESTIONS)] for w in range(workers)]

    def body(w: int, i: int) -> Signed:
        respondent(w, i)  # stops the benchmark past the last one
        return signed[w][i]

    return body


class Webhooks(Clients):
    """Clients that post signed form webhooks and expect TwiML back."""

    async def send(self, http: Any, w: int, i: int) -> None:
        form, sig = self.body(w, i)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig}
        async with http.post(self.url, data=form, headers=headers) as resp:
            text = await resp.text()
            if resp.status != 200 or "<Response>" not in text:  # no closing: empty
                raise SystemExit(f"unexpected answer {resp.status}: {text[:200]}")

    async def paced(self, rate: float, seconds: float) -> tuple[list[float], list[float]]:
        """Start a webhook every 1/rate s for `seconds`, each from the next client in turn,
        whether or not the earlier ones are answered; the latencies, counted from when each
        was due, and how late each started."""
        latencies: list[float] = []
        late: list[float] = []
        async with self.session() as http:

            async def one(w: int, i: int, due: float) -> None:
                late.append(time.perf_counter() - due)
                await self.send(http, w, i)
                latencies.append(time.perf_counter() - due)

            tasks = []
            start = time.perf_counter()
            for k in range(int(rate * seconds)):
                due = start + k / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                w = k % self.workers
                tasks.append(asyncio.create_task(one(w, self.sent[w], due)))
                self.sent[w] += 1
            await asyncio.gather(*tasks)
        return latencies, late


async def main(args: argparse.Namespace) -> None:
    bare_port, seda_port = free_port(), free_port()
    bare_url, seda_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{seda_port}"
    public = f"{seda_url}/sms/main"
    line = {"provider": "twilio", "number": "+15550000000", "account_sid": ACCOUNT,
            "auth_token": TOKEN, "base_url": bare_url, "public_url": public}  # fmt: skip
    channels = {"api": {"enabled": True}, "sms": {"lines": {"main": line}}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        server([sys.executable, __file__, "--bare", str(bare_port)]) as bare_proc,
        seda_server(Path(tmp), seda_port, channels, args.store_writer) as seda_proc,
    ):
        await wait_healthy(bare_url)
        await wait_healthy(seda_url)
        await invite(
            seda_url,
            args.concurrency * PER_WORKER,
            lambda n: {**tel(n), "channel": "sms", "line": "main"},
        )
        await drained(seda_url)  # the invitations out through the bare server first (not timed)
        bare, seda = Side("bare", bare_proc.pid), Side("seda", seda_proc.pid)
        hook, workers = f"{bare_url}/sms/main", args.concurrency
        bare_hooks = Webhooks(hook, workers, signed_requests(hook, workers))
        seda_hooks = Webhooks(public, workers, signed_requests(public, workers))
        drives = bare_hooks.drive, seda_hooks.drive
        await alternate(bare, seda, args.rounds, args.seconds, *drives, partial(drained, seda_url))
        rate = seda.rate / 2
        latencies, late = await seda_hooks.paced(rate, args.paced_seconds)
    report(bare, seda, "webhook")
    cuts, lag = statistics.quantiles(latencies, n=100), statistics.quantiles(late, n=100)
    print(
        f" paced: {rate:8.0f} per s   p50 {cuts[49] * 1000:6.1f} ms   p99 {cuts[98] * 1000:6.1f} ms"
        f"   ({len(latencies)} in {args.paced_seconds:.1f} s, open loop)"
    )
    print(
        f"        p99 {cuts[98] * 1000:.1f} ms at half seda's rate (target < 25 ms);"
        f" client start lag p99 {lag[98] * 1000:.1f} ms"
    )


def cli() -> None:
    parser = options(__doc__)
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="at half seda's rate")
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_server(args.bare)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
