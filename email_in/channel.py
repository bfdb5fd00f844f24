"""The email channel: an SMTP server for replies on Seda's own loop, and mail that asks.

Inbound: aiosmtpd's SMTP protocol served with `loop.create_server` (no extra thread), the
handler in email_in.inbound, at most `max_connections` connections at once (beyond: 421).
Outbound (the Sender capability): every batch of prompts becomes one email through the
configured relay, DKIM-signed when a key is configured; scale, yes/no and choice questions get
answer links, and every email a one-click unsubscribe link (RFC 8058).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from email.utils import parseaddr
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP

from email_in import texts
from email_in.authenticity import Checker
from email_in.compose import Headers, Letter, compose
from email_in.inbound import InboundHandler
from email_in.links import AnswerLinks
from email_in.relay import RelayClient
from email_in.settings import EmailSettings, parse
from email_in.signing import Signer
from email_in.tokens import Tokens
from email_in.unsubscribe import Unsubscribe
from gateway.backends import DeliveryError
from gateway.config import ConfigError
from gateway.logs import fields
from gateway.router import Gateway

log = logging.getLogger("seda.email")
# ASCII addresses only: an internationalised one (RFC 6531) needs SMTPUTF8 all the way.
_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}\Z")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})?\Z")
_MESSAGE_ID = re.compile(r"^[!-;=?-~]{1,200}@[!-;=?-~]{1,200}\Z")  # no <, > or spaces
BUSY = b"421 4.3.2 Too many connections, try again later\r\n"
BUSY_CLIENT = b"421 4.7.0 Too many connections from your address, try later\r\n"


# A MAIL or RCPT path in its everyday form: <local@domain>, a dot-atom local part and a plain
# domain, then the parameters. aiosmtpd parses every path with the email package's header parser
# and defines a class on each call: 15% of the SMTP channel's event-loop time in
# bench/smtp_ingest (py-spy). This form gives the same result as that parser (a differential
# test checks it); anything else still goes through it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9-]+"
_PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*)@({_LABEL}(?:\.{_LABEL})*)>[ \t]*([^ \t(\r\n][^\r\n]*)?"
)


class _Connection(SMTP):
    """aiosmtpd's protocol, counted from creation until the connection is lost (in all, and
    for its client's address)."""

    def __init__(
        self, handler: Any, live: set[_Connection], clients: Counter[str], client: str,
        **options: Any,
    ) -> None:  # fmt: skip
        super().__init__(handler, **options)
        self._live = live
        self._clients = clients
        self._client = client
        live.add(self)
        clients[client] += 1

    def connection_lost(self, error: Exception | None) -> None:
        """Stop counting this connection."""
        if self in self._live:
            self._live.discard(self)
            self._clients[self._client] -= 1
            if self._clients[self._client] <= 0:
                del self._clients[self._client]
        super().connection_lost(error)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parsing, with the everyday form parsed by a regular expression."""
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is None:
            return super()._getaddr(arg)
        local, domain, rest = plain.groups()
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return f"{local}@{domain}", rest or ""


class _Busy(asyncio.Protocol):
    """The answer to a connection beyond a cap: 421, then hang up (RFC 5321 section 3.1)."""

    def __init__(self, reply: bytes = BUSY) -> None:
        self.reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Say 421 and close."""
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.reply)
        transport.close()


class _Gate(asyncio.Protocol):
    """Picks a connection's protocol once its peer is known (the factory is not told it), and
    hands the transport over before any data can arrive."""

    def __init__(self, admit: Callable[[str], asyncio.Protocol]) -> None:
        self._admit = admit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the peer (an SMTP session) or refuse it (421)."""
        protocol = self._admit(client_key(transport.get_extra_info("peername")))
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def client_key(peer: Any) -> str:
    """What one client is for the per-client cap: its IPv4 address, or its IPv6 /64 (one
    host often holds a whole /64)."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        address = ipaddress.ip_address(str(host).partition("%")[0])
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


SMTP_VERBS = frozenset(
    {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
     "HELP", "STARTTLS", "AUTH", "PROXY"}
)  # fmt: skip


class UnknownCommands(logging.Filter):
    """aiosmtpd warns of each unrecognised command with its first word: from a client that
    sends a message's lines after its recipient was refused, that is the message's text."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace a command that is not an SMTP verb; let every record through."""
        known = record.msg in ("%r unrecognised: %s", "%r over limit for %s")
        if known and isinstance(record.args, tuple) and len(record.args) == 2:
            peer, command = record.args
            if str(command) not in SMTP_VERBS:
                record.args = (peer, "<not an SMTP command>")
        return True


class EmailChannel:
    """Replies by email (inbound SMTP) and invitations by email (through a relay)."""

    name = "email"
    checks_whole_block = True  # parse() looks up every key, past every mistake

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]):
        self.gateway = gateway
        self.settings: EmailSettings = parse(spec)
        self.tokens = Tokens(self.settings.token_secret)
        authenticity = self.settings.authenticity
        checker = None if authenticity.policy == "off" else Checker(authenticity)
        self.handler = InboundHandler(
            gateway,
            self.tokens,
            self.settings.reply_domain,
            self.settings.max_recipients,
            checker,
        )
        self.links = AnswerLinks(gateway, self.tokens, self.settings.link_base)
        self.unsubscribe = Unsubscribe(gateway, self.tokens, self.settings.link_base)
        self.signer = Signer(self.settings.signing) if self.settings.signing else None
        self.relay = RelayClient(self.settings.relay, self.settings.hostname)
        self._server: asyncio.Server | None = None
        self._live: set[_Connection] = set()
        self.refused_busy = 0  # connections answered 421 since start
        self._clients: Counter[str] = Counter()  # open connections by client (client_key)
        self.refused_client = 0  # connections answered 421 for their client's share

    @staticmethod
    def check_settings(spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """`seda validate` and `seda run`: every mistake of the block as the channel reads it
        at start, one line each."""
        try:
            parse(spec)
        except ConfigError as exc:
            return str(exc).split("\n")
        return []

    @property
    def port(self) -> int | None:
        """The port the SMTP server listens on (useful with port 0), None when stopped."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """SMTP connections open now."""
        return len(self._live)

    def routes(self) -> list[web.RouteDef]:
        """One-click answer links and one-click unsubscribe."""
        return [*self.links.routes(), *self.unsubscribe.routes()]

    async def start(self) -> None:
        """Listen for SMTP on the configured address."""
        mail_log = logging.getLogger("mail.log")
        if mail_log.level == logging.NOTSET:
            mail_log.setLevel(logging.WARNING)  # aiosmtpd logs addresses at INFO
        if not any(isinstance(f, UnknownCommands) for f in mail_log.filters):
            mail_log.addFilter(UnknownCommands())
        loop = asyncio.get_running_loop()
        settings = self.settings
        context = settings.tls_context()

        def admit(client: str) -> asyncio.Protocol:
            if len(self._live) >= settings.max_connections:
                self.refused_busy += 1
                if self.refused_busy in (1, 10, 100) or self.refused_busy % 1000 == 0:
                    log.warning("smtp busy", extra=fields(refused=self.refused_busy))
                return _Busy()
            if self._clients[client] >= settings.max_connections_per_client:
                self.refused_client += 1
                if self.refused_client in (1, 10, 100) or self.refused_client % 1000 == 0:
                    log.warning(
                        "smtp client over its share", extra=fields(refused=self.refused_client)
                    )
                return _Busy(BUSY_CLIENT)
            return _Connection(
                self.handler,
                self._live,
                self._clients,
                client,
                data_size_limit=settings.data_size_limit,
                enable_SMTPUTF8=True,
                hostname=settings.hostname,
                ident="Seda",
                tls_context=context,
                require_starttls=settings.require_starttls,
                auth_exclude_mechanism=("LOGIN", "PLAIN"),  # nobody logs in to an MX
                timeout=settings.timeout,
                loop=loop,
            )

        self._server = await loop.create_server(lambda: _Gate(admit), settings.host, settings.port)
        log.info(
            "smtp listening",
            extra=fields(
                port=self.port,
                starttls=context is not None,
                max_connections=settings.max_connections,
                max_connections_per_client=settings.max_connections_per_client,
                authenticity=settings.authenticity.policy,
            ),
        )

    async def stop(self) -> None:
        """Stop listening and hang up the connections still open."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._live):
            if connection.transport is not None:
                connection.transport.close()
        await self._server.wait_closed()
        self._server = None

    def invitation_address(self, address: str, line: str | None) -> str:
        """A mailto: address Seda can send to (ASCII: see _ADDRESS), unchanged; ValueError for
        anything else. Email has no lines: `line` is not used."""
        if not address.startswith("mailto:") or not _ADDRESS.match(address[len("mailto:") :]):
            raise ValueError(
                "an email invitation goes to a mailto: address in ASCII, such as"
                " mailto:leila@example.com"
            )
        return address

    async def deliver(self, event: dict[str, Any]) -> None:
        """Send one batch of prompts as an email; raise DeliveryError if the relay refuses."""
        data = event.get("data") or {}
        address = str(data.get("address", ""))
        to = address.removeprefix("mailto:")
        if not address.startswith("mailto:") or not _ADDRESS.match(to):
            raise DeliveryError("not an email address Seda can send to", retryable=False)
        language = str(data.get("language") or "en")
        if not _LANGUAGE.match(language):
            language = "en"
        prompts = list(data.get("prompts") or [])
        response_id = data.get("response_id")
        links = {}
        if response_id:
            links = await self.links.for_prompts(str(response_id), prompts, language)
        letter = Letter(to=to, language=language, prompts=prompts, links=links)
        headers = self._headers(str(event.get("id", "")), response_id, language, address)
        answering = _reply_id(data.get("in_reply_to"))
        if answering is not None and headers.reply_to is not None:
            # Thread the next question under the respondent's own reply.
            headers = replace(
                headers, subject=f"Re: {headers.subject}", in_reply_to=f"<{answering}>"
            )
        message = compose(letter, headers)
        if self.signer is not None:
            message = self.signer.sign(message)
        await self.relay.send(message, self._envelope_sender(response_id), to)
        log.info("email sent", extra=fields(prompts=len(prompts)))

    async def close(self) -> None:
        """Close the relay connections."""
        await self.relay.close()

    def _headers(
        self, event_id: str, response_id: str | None, language: str, address: str
    ) -> Headers:
        settings = self.settings
        domain = settings.reply_domain
        subject = settings.subject.get(language) or texts.say(texts.SUBJECT, language)
        # The event id is stable across retries, so a resent email keeps its Message-ID.
        n = event_id.replace("-", "") or "0"
        if not response_id:  # an opt-out notice without a response: nothing to reply to
            return Headers(settings.sender, subject, f"<notice.{n}@{domain}>", self.gateway.clock())
        token = self.tokens.issue(response_id)
        return Headers(
            sender=settings.sender,
            subject=subject,
            message_id=f"<inv.{token}.{n}@{domain}>",
            date=self.gateway.clock(),
            reply_to=f"survey+{token}@{domain}",
            unsubscribe=f"unsubscribe+{token}@{domain}",
            unsubscribe_url=self.unsubscribe.url(response_id, address),
            thread=f"<thread.{token}@{domain}>",
        )

    def _envelope_sender(self, response_id: str | None) -> str:
        if self.settings.verp and response_id:
            return self.tokens.address("bounce", response_id, self.settings.reply_domain)
        return parseaddr(self.settings.sender)[1]


def _reply_id(message_id: Any) -> str | None:
    """The Message-ID of the email the prompts answer (none for links, opt-outs, digests)."""
    if not isinstance(message_id, str):
        return None
    # Undo what email_in.inbound added to make ids unique per recipient and purpose.
    message_id = re.sub(r"#\d+$", "", message_id.removeprefix("unsubscribe."))
    return message_id if _MESSAGE_ID.match(message_id) else None
