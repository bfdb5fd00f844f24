"""The whole gateway with the email channel on loopback, an aiosmtpd relay that records, and a
DNS server on loopback that Seda's DKIM and SPF checks ask (policy `record` by default)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from email_in.tokens import Tokens
from gateway.config import load
from gateway.router import Gateway
from gateway.server import GATEWAY, create_app
from tests.answer_schema import assert_valid_answer
from tests.conftest import Clock, write_config
from tests.e2e.harness import free_port
from tests.email.dns_server import Zone, serve

DATA = Path(__file__).resolve().parent.parent / "data" / "email"
SECRET = "test-token-secret-0123456789"
DOMAIN = "reply.example"
LINK_BASE = "https://seda.example"
TOKENS = Tokens(SECRET.encode())


@dataclass
class Sent:
    """One message the relay took."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    peer: str = ""

    @property
    def message(self) -> EmailMessage:
        """The message, parsed."""
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Relay:
    """Plays the operator's relay: records what it takes, or refuses at MAIL FROM or RCPT."""

    port: int
    refuse: str | None = None  # at RCPT, e.g. "550 5.1.1 User unknown" or "451 4.3.0 Try later"
    refuse_sender: str | None = None  # at MAIL FROM, e.g. "553 5.7.1 Sender address rejected"
    sent: list[Sent] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        sent = Sent(str(envelope.mail_from), list(envelope.rcpt_tos), raw, str(session.peer))
        self.sent.append(sent)
        return "250 OK"

    async def wait(self, count: int, seconds: float = 3.0) -> list[Sent]:
        """The first `count` messages, once the relay has them."""
        for _ in range(int(seconds / 0.02)):
            if len(self.sent) >= count:
                return self.sent
            await asyncio.sleep(0.02)
        raise AssertionError(f"the relay got {len(self.sent)} of {count} messages")


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A real SMTP server on a loopback port (aiosmtpd's threaded Controller)."""
    recorder = Relay(port=free_port())
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port)
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


@dataclass
class Dns:
    """The loopback DNS server the channel is pointed at, and what it serves."""

    zone: Zone
    port: int

    @property
    def server(self) -> str:
        """The `dns_server` setting."""
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def dns() -> Iterator[Dns]:
    """An empty zone (every name NXDOMAIN) until a test adds records."""
    zone = Zone()
    with serve(zone) as port:
        yield Dns(zone, port)


@dataclass
class Seda:
    """The running gateway: HTTP client, core, SMTP port and the relay it sends through."""

    client: TestClient  # type: ignore[type-arg]
    app: web.Application
    smtp_port: int
    relay: Relay
    tmp_path: Path
    dns: Dns

    @property
    def gateway(self) -> Gateway:
        """The core."""
        return self.app[GATEWAY]

    async def invite(
        self, address: str, survey: str = "post_call_nps", language: str = "en", **extra: Any
    ) -> str:
        """Start a survey by email through the API; returns the response id."""
        body = {"survey": survey, "respondent": address, "language": language, "channel": "email"}
        resp = await self.client.post("/api/v1/invitations", json={**body, **extra})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["response_id"])

    async def answers(self, response_id: str) -> list[dict[str, Any]]:
        """The stored answers of a response, each checked against the published schema."""
        answers = await self.gateway.store.answers_for(response_id)
        for answer in answers:
            assert_valid_answer(answer)
        return answers

    async def status(self, response_id: str) -> str:
        """The status of a response (open, completed, abandoned)."""
        row = await self.gateway.store.session(response_id)
        assert row is not None
        return row.status


SedaFactory = Callable[..., Awaitable[Seda]]


def email_spec(
    smtp_port: int, relay_port: int, dns_server: str, **overrides: Any
) -> dict[str, Any]:
    """A `channels.email` block for tests; DNS only from the loopback server."""
    spec: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": smtp_port,
        "reply_domain": DOMAIN,
        "token_secret": SECRET,
        "from": "Seda Surveys <surveys@example.com>",
        "relay": {"host": "127.0.0.1", "port": relay_port, "starttls": False, "timeout": 5},
        "link_base": LINK_BASE,
        "timeout": 10,
    }
    authenticity = {"dns_server": dns_server, "dns_timeout": 2}
    authenticity.update(overrides.pop("authenticity", {}))  # never the machine's resolver
    spec["authenticity"] = authenticity
    spec.update(overrides)
    return spec


@pytest.fixture
async def make_seda(
    tmp_path: Path, aiohttp_client: Any, relay: Relay, dns: Dns
) -> AsyncIterator[SedaFactory]:
    """Start the whole app (so the channel's start() runs) with email settings overridden."""

    async def make(clock: Clock | None = None, **overrides: Any) -> Seda:
        port = free_port()
        email = email_spec(port, relay.port, dns.server, **overrides)
        channels = {"api": {"enabled": True}, "email": email}
        config = load(write_config(tmp_path, channels=channels))
        app = await (create_app(config) if clock is None else create_app(config, clock))
        client = await aiohttp_client(app)
        return Seda(client, app, port, relay, tmp_path, dns)

    yield make


@pytest.fixture
async def seda(make_seda: SedaFactory) -> Seda:
    """The gateway with the default test settings."""
    return await make_seda()


@dataclass
class Conversation:
    """The reply codes of one SMTP transaction."""

    mail: int
    rcpt: list[int]
    data: int | None


def converse(
    port: int,
    mail_from: str,
    rcpts: list[str],
    raw: bytes | None,
    tls: ssl.SSLContext | None = None,
) -> Conversation:
    """One transaction with the standard library's smtplib (blocking: run it in a thread)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as smtp:
        smtp.ehlo()
        if tls is not None:
            smtp.starttls(context=tls)
            smtp.ehlo()
        mail, _ = smtp.mail(mail_from)
        codes = [smtp.rcpt(rcpt)[0] for rcpt in rcpts] if mail == 250 else []
        data = None
        if raw is not None and 250 in codes:
            data, _ = smtp.data(raw)
        return Conversation(mail, codes, data)


async def send(
    seda: Seda,
    raw: bytes,
    rcpts: list[str],
    mail_from: str = "someone@example.org",
    tls: ssl.SSLContext | None = None,
) -> Conversation:
    """Deliver a message to Seda's SMTP server over loopback."""
    return await asyncio.to_thread(converse, seda.smtp_port, mail_from, rcpts, raw, tls)


def reply_to(response_id: str, purpose: str = "survey") -> str:
    """The address a respondent writes to."""
    return TOKENS.address(purpose, response_id, DOMAIN)  # type: ignore[arg-type]


def plain_reply(
    response_id: str, text: str, message_id: str, sender: str = "someone@example.org"
) -> bytes:
    """A minimal text/plain reply, as a simple client writes it."""
    token = TOKENS.issue(response_id)
    return (
        f"From: {sender}\r\nTo: survey+{token}@{DOMAIN}\r\nSubject: Re: A short survey\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
        f"{text}\r\n\r\n> the question\r\n"
    ).encode()


def fixture(name: str, response_id: str, address: str) -> bytes:
    """A stored .eml with the response's token (and the respondent's address) filled in."""
    raw = (DATA / name).read_bytes()
    token = TOKENS.issue(response_id).encode()
    return raw.replace(b"{{token}}", token).replace(b"{{address}}", address.encode())
