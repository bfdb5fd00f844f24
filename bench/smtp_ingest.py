"""Email replies per second through Seda's SMTP server, acknowledged after commit, as a ratio.

Compares a bare aiosmtpd server whose handler discards every message (the same SMTP class,
served the same way, on its own process) with `seda run` with the email channel (SQLite,
synchronous=FULL, the next question mailed out through a discarding relay for every answer).
Starts both, then drives them in alternating rounds (bare, seda, bare, seda, ...) with the same
client over persistent connections, so that load from other work on a shared machine falls on
both alike. After every seda round, untimed, it waits until seda's outbox is empty, so that the
questions of one round are not mailed during the next bare round; seda's CPU for mailing them
counts towards its messages (the relay's does not). Prints each side's rate, p50 and p99 latency
and server CPU per message, the ratio of every round and seda's overall rate as a fraction of
the bare one.

    .venv/bin/python bench/smtp_ingest.py [--seconds 12] [--rounds 4] [--concurrency 32]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    PER_WORKER,
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
    server,
    wait_healthy,
)
from email_in.tokens import Tokens  # noqa: E402

SECRET = "bench-token-secret-0123456789"
DOMAIN = "reply.bench"


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


class Senders(Clients):
    """Clients that each send over their own SMTP connection, open for a round; `url` is the
    server's port, and `body(w, i)` gives the recipient and the message."""

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        clients = [
            aiosmtplib.SMTP(
                hostname="127.0.0.1",
                port=int(self.url),
                start_tls=False,
                local_hostname="client.bench",
            )
            for _ in range(self.workers)
        ]
        await asyncio.gather(*(client.connect() for client in clients))
        yield clients
        await asyncio.gather(*(client.quit() for client in clients))

    async def send(self, clients: Any, w: int, i: int) -> None:
        recipient, raw = self.body(w, i)
        _, answer = await clients[w].sendmail("respondent@bench.example", [recipient], raw)
        if "accepted" not in answer:
            raise SystemExit(f"unexpected answer: {answer}")


async def main() -> None:
    args = options(__doc__, concurrency=32).parse_args()
    bare_port, http_port, smtp_port, relay_port = (free_port() for _ in range(4))
    seda_url = f"http://127.0.0.1:{http_port}"
    email = {
        "port": smtp_port,
        "reply_domain": DOMAIN,
        "token_secret": SECRET,
        "from": "Seda <surveys@bench.example>",
        "relay": {"host": "127.0.0.1", "port": relay_port, "starttls": False},
        "link_base": seda_url,
    }
    bare_cmd = [sys.executable, __file__, "--bare", str(bare_port)]
    relay_cmd = [sys.executable, __file__, "--bare", str(relay_port)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        server(bare_cmd) as bare_proc,
        server(relay_cmd),
        seda_server(
            Path(tmp), http_port, {"api": {"enabled": True}, "email": email}, args.store_writer
        ) as seda_proc,
    ):
        for port in (bare_port, relay_port, smtp_port):
            await wait_port(port)
        await wait_healthy(seda_url)
        tokens = Tokens(SECRET.encode())

        def invitation(n: int) -> dict[str, Any]:
            address = f"mailto:r{n}@bench.example"
            return {"survey": "bench_nps", "respondent": address, "channel": "email"}

        invited = await invite(seda_url, args.concurrency * PER_WORKER, invitation)
        recipients = [tokens.address("survey", new["response_id"], DOMAIN) for new in invited]
        await drained(seda_url)  # the invitations out first (not timed)

        def bare_message(w: int, i: int) -> tuple[str, bytes]:
            recipient = f"anyone@{DOMAIN}"
            return recipient, reply(recipient, f"b{w}-{i}")

        def seda_message(w: int, i: int) -> tuple[str, bytes]:
            recipient = recipients[respondent(w, i)]
            return recipient, reply(recipient, f"s{w}-{i}")

        bare, seda = Side("bare", bare_proc.pid), Side("seda", seda_proc.pid)
        bare_senders = Senders(str(bare_port), args.concurrency, bare_message)
        seda_senders = Senders(str(smtp_port), args.concurrency, seda_message)
        drives = bare_senders.drive, seda_senders.drive
        await alternate(bare, seda, args.rounds, args.seconds, *drives, partial(drained, seda_url))
    report(bare, seda, "message")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        serve_bare(int(sys.argv[2]))
    else:
        asyncio.run(main())
