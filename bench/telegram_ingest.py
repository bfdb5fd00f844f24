"""Telegram updates per second through POST /telegram/{bot}, acknowledged after commit, as a ratio.

Compares a bare aiohttp handler (checks the secret header, parses the update, answers 200, stores
nothing) with `seda run` with one Telegram bot (SQLite, synchronous=FULL, `reply: inline`, the
default: a reply's next prompt is a sendMessage in the webhook answer) whose Bot API is a fake
on loopback (answering getMe and the sendMessage of every prompt the forwarder sends). Starts
both, then drives them in alternating rounds (bare, seda, bare, seda, ...) with the same client,
so that load from other work on a shared machine falls on both alike. After every seda round,
untimed, it waits until seda's outbox is empty, so that the prompts of one round are not sent
during the next bare round; seda's CPU for sending them counts towards its updates. Prints each
side's rate, p50 and p99 latency and server CPU per update, the ratio of every round and seda's
overall rate as a fraction of the bare one, and checks that every prompt went out once: the
invitations at the fake Bot API, the replies' prompts in the webhook answers.

    .venv/bin/python bench/telegram_ingest.py [--seconds 12] [--rounds 4] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
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
    wait_healthy,
)

TOKEN = "7000000001:AAbenchmarkTokenNotARealOne_0123456"
SECRET = "bench-secret"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
CHATS = 200_000  # seda's respondents are telegram:200000 and on


def update(chat: int, update_id: int) -> dict[str, Any]:
    """A private text message «9», shaped like a real Telegram update."""
    user = {"id": chat, "is_bot": False, "first_name": "Bench", "language_code": "en"}
    message = {"message_id": update_id, "from": user, "date": 1767225600, "text": "9",
               "chat": {"id": chat, "first_name": "Bench", "type": "private"}}  # fmt: skip
    return {"update_id": update_id, "message": message}


def updates(stateful: bool) -> Callable[[int, int], dict[str, Any]]:
    """Client w's i-th update: from its own respondents in turn, QUESTIONS updates each. The
    bare handler keeps no state, so its clients go round their respondents again."""

    def body(w: int, i: int) -> dict[str, Any]:
        if stateful:
            chat = CHATS + respondent(w, i)
        else:
            chat = w * PER_WORKER + i // QUESTIONS % PER_WORKER
        return update(chat, 1_000_000 + w * 100_000 + i)

    return body


class WebhookClients(Clients):
    """Seda's clients: an acknowledgement is a 200 with `"status": "accepted"`, or one carrying
    the next prompt as a sendMessage to the update's own chat (counted in `inline`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inline = 0

    async def send(self, http: Any, w: int, i: int) -> None:
        body = self.body(w, i)
        async with http.post(self.url, json=body, headers=self.headers) as resp:
            data = await resp.json()
            if resp.status == 200 and data.get("method") == "sendMessage":
                if data.get("chat_id") != body["message"]["chat"]["id"] or not data.get("text"):
                    raise SystemExit(f"a prompt for the wrong chat or without text: {data}")
                self.inline += 1
            elif resp.status != 200 or data.get("status") != "accepted":
                raise SystemExit(f"unexpected answer {resp.status}: {data}")


def serve_bare(port: int) -> None:
    """The baseline: the same route, secret check and JSON parse, storing nothing."""

    async def webhook(request: web.Request) -> web.Response:
        if request.headers.get(HEADER) != SECRET:
            return web.json_response({"status": "rejected"}, status=403)
        body = await request.json()
        return web.json_response({"status": "accepted", "update": body.get("update_id")})

    serve(port, [web.post("/telegram/{bot}", webhook)])


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

    serve(port, [web.post("/bot{token}/{method}", call), web.get("/stats", stats)])


async def sent_at_least(api_url: str, count: int) -> int:
    """Wait until the fake Bot API received `count` sendMessage calls; returns how many it got."""
    got = 0
    async with aiohttp.ClientSession() as http:
        for _ in range(1200):
            async with http.get(f"{api_url}/stats") as resp:
                got = (await resp.json())["sendMessage"]
                if got >= count:
                    return int(got)
            await asyncio.sleep(0.05)
    raise SystemExit(f"{got} of {count} prompts reached the fake Bot API")


def invitation(n: int) -> dict[str, Any]:
    return {"survey": "bench_nps", "respondent": f"telegram:{CHATS + n}", "channel": "telegram"}


async def main(args: argparse.Namespace) -> None:
    bare_port, api_port, seda_port = free_port(), free_port(), free_port()
    me = [sys.executable, __file__]
    api_url, seda_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{seda_port}"
    bot = {"token": TOKEN, "secret": SECRET, "base_url": f"{api_url}/bot"}
    channels = {"api": {"enabled": True}, "telegram": {"enabled": True, "bots": {"bench": bot}}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        server([*me, "--serve-bare", str(bare_port)]) as bare_proc,
        server([*me, "--serve-bot-api", str(api_port)]),
        seda_server(Path(tmp), seda_port, channels, args.store_writer) as seda_proc,
    ):
        bare_url = f"http://127.0.0.1:{bare_port}"
        for url in (bare_url, api_url, seda_url):
            await wait_healthy(url)
        respondents = args.concurrency * PER_WORKER
        await invite(seda_url, respondents, invitation)
        await sent_at_least(api_url, respondents)  # the invitations are out (not timed)
        await drained(seda_url)
        bare, seda = Side("bare", bare_proc.pid), Side("seda", seda_proc.pid)
        headers = {HEADER: SECRET}
        bare_clients = Clients(
            f"{bare_url}/telegram/bench", args.concurrency, updates(False), headers
        )
        seda_clients = WebhookClients(
            f"{seda_url}/telegram/bench", args.concurrency, updates(True), headers
        )
        drives = bare_clients.drive, seda_clients.drive
        await alternate(bare, seda, args.rounds, args.seconds, *drives, partial(drained, seda_url))
        # Every update gets its next prompt, but a survey's last answer (bench_nps has no
        # closing message): check that they all went out, each once. The outbox is empty after
        # every seda round, so the fake Bot API has all it will get.
        last = sum(sent // QUESTIONS for sent in seda_clients.sent)
        prompts = respondents + len(seda.latencies) - last
        inline = seda_clients.inline
        by_api = await sent_at_least(api_url, prompts - inline)
        if by_api + inline != prompts:
            raise SystemExit(f"{by_api} prompts by the Bot API + {inline} inline, not {prompts}")
    report(bare, seda, "update", target=None)  # the Telegram issue asks for the ratio only
    print(f"        {prompts} prompts went out (invitations + one per update): {by_api} through"
          f" the fake Bot API, {inline} in webhook answers")  # fmt: skip


def cli() -> None:
    parser = options(__doc__)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bot-api", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
    elif args.serve_bot_api:
        serve_bot_api(args.serve_bot_api)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
