"""Sending through the configured relay with aiosmtplib, reusing a few open connections.

A refusal (5xx) of the recipient or the message is final: DeliveryError(retryable=False). A 4xx,
a lost connection or a timeout can pass: DeliveryError(retryable=True), and the forwarder tries
again later. So can a failed login, a 530 (login or STARTTLS required) and a refused sender
(MAIL FROM): they are fixed in the configuration, not in the message.
"""

from __future__ import annotations

import asyncio
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
            username=relay.username,
            password=relay.password,
            local_hostname=self._local_hostname,
            timeout=relay.timeout,
            start_tls=relay.starttls,
        )
        try:
            await client.connect()
        except Exception as exc:
            await _quit(client)
            raise _delivery_error(exc) from None
        return client, False


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
        # (relay.username, relay.starttls), not this message: it waits like a failed login.
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
