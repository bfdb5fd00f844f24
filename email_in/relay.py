"""Sending through the configured relay with aiosmtplib, reusing a few open connections.

A refusal (5xx) of the recipient or the message is final: DeliveryError(retryable=False). A 4xx,
a lost connection or a timeout can pass: DeliveryError(retryable=True), and the forwarder tries
again later. So can a failed login, a 530 (login or STARTTLS required) and a refused sender
(MAIL FROM): they are fixed in the configuration, not in the message. So is a TLS problem: a
certificate that does not verify, a failed handshake, or no STARTTLS where relay.tls wants it
(then nothing at all is sent, the login included).
"""

from __future__ import annotations

import asyncio
import ssl
import time

import aiosmtplib

from email_in.settings import Relay
from gateway.backends import DeliveryError
from gateway.logs import redact

IDLE_SECONDS = 20.0  # relays hang up idle clients; reuse a connection only while it is fresh


class RelayClient:
    """A small pool of SMTP client connections to one relay."""

    def __init__(self, relay: Relay, local_hostname: str):
        self._relay = relay
        self._local_hostname = local_hostname
        self._slots = asyncio.Semaphore(relay.connections)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._tls = relay.tls_context()  # verifies the relay's certificate and name

    async def send(self, raw: bytes, sender: str, recipient: str) -> None:
        """Hand one message to the relay; raise DeliveryError if it did not take it."""
        async with self._slots:
            for attempt in range(2):
                client, reused = await self._acquire()
                try:
                    await client.sendmail(sender, [recipient], raw)
                except aiosmtplib.SMTPServerDisconnected as exc:
                    await _quit(client)
                    if reused and attempt == 0:
                        continue  # the relay closed an idle connection: once more, fresh
                    error = f"relay hung up: {type(exc).__name__}"
                    raise DeliveryError(error, retryable=True) from None
                except Exception as exc:
                    await _quit(client)
                    raise _delivery_error(exc) from None
                self._idle.append((client, time.monotonic()))
                return

    async def close(self) -> None:
        """Say goodbye to the relay on every open connection."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            await _quit(client)

    async def _acquire(self) -> tuple[aiosmtplib.SMTP, bool]:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < IDLE_SECONDS:
                return client, True
            await _quit(client)
        relay = self._relay
        client = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            local_hostname=self._local_hostname,
            timeout=relay.timeout,
            use_tls=relay.tls == "implicit",
            start_tls=False,  # below, so that a relay without it is told apart
            tls_context=self._tls,
        )
        try:
            await client.connect()
            if relay.tls == "starttls":
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise _NoStartTls()
                await client.starttls()
            if relay.username is not None:  # only now: over TLS unless tls is none
                await client.login(relay.username, relay.password or "")
        except Exception as exc:
            await _quit(client)
            raise self._connect_error(exc) from None
        return client, False

    def _connect_error(self, exc: Exception) -> DeliveryError:
        """A failed connection, TLS or login, in words an operator can act on."""
        relay = self._relay
        if isinstance(exc, _NoStartTls):
            return DeliveryError(
                f"relay {relay.host}:{relay.port} does not offer STARTTLS, which relay.tls "
                "requires: nothing was sent (port 465 wants tls: implicit)",
                retryable=True,
            )
        problem = _tls_problem(exc)
        if isinstance(problem, ssl.SSLCertVerificationError):
            why = problem.verify_message or problem.reason or "not verified"
            return DeliveryError(
                f"TLS certificate of {relay.host} not accepted: {why} (a private relay's CA "
                "goes in relay.ca_file)",
                retryable=True,
            )
        if problem is not None:
            return DeliveryError(
                f"TLS handshake with {relay.host}:{relay.port} failed "
                f"({problem.reason or type(problem).__name__}): check relay.tls for this port "
                "(465: implicit, 587: starttls)",
                retryable=True,
            )
        return _delivery_error(exc)


class _NoStartTls(Exception):
    """The relay does not offer STARTTLS, and the configuration requires it."""


def _tls_problem(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failure, if any (aiosmtplib wraps the one of implicit TLS)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _delivery_error(exc: Exception) -> DeliveryError:
    """What a failure means for retrying; the text carries no addresses."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({r.code for r in exc.recipients})
        final = all(code >= 500 for code in codes)
        return DeliveryError(f"relay refused the recipient ({codes})", retryable=not final)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # A wrong password is fixed in the configuration; the mail should wait for that.
        return DeliveryError(f"relay login failed ({exc.code})", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 530:
        # RFC 4954/3207: the relay wants a login or STARTTLS first. That is the configuration
        # (relay.username, relay.tls), not this message: it waits like a failed login.
        reason = redact(exc.message)[:200]
        return DeliveryError(f"relay requires login or STARTTLS (530): {reason}", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # A refused MAIL FROM refuses every message alike: the relay does not let Seda send as
        # that address (channels.email.from, or bounce+TOKEN@reply-domain with verp). Like a
        # webhook's 401, the mail waits for the operator's fix, until the retry horizon.
        reason = redact(exc.message)[:200]
        return DeliveryError(
            f"relay refused the sender ({exc.code}): {reason}; allow channels.email.from "
            "(and the reply domain when verp is on) at the relay",
            retryable=True,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reason = redact(exc.message)[:200]
        return DeliveryError(f"relay answered {exc.code}: {reason}", retryable=exc.code < 500)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        return DeliveryError(f"relay unreachable: {type(exc).__name__}", retryable=True)
    return DeliveryError(f"relay error: {type(exc).__name__}", retryable=True)


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await asyncio.wait_for(client.quit(), 2.0)
    except Exception:
        client.close()
