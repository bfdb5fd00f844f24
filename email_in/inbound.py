"""The SMTP handler: recipients checked at RCPT, each message read and answered at DATA.

Only `survey+`, `unsubscribe+` and `bounce+` addresses of the reply domain with a genuine token
are accepted; anything else gets 550 at RCPT, so Seda never relays and never bounces. 250 comes
only after the gateway has committed the answer (it de-duplicates on Message-ID); a failure is
451 so that the sending server tries again.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from dataclasses import dataclass
from email.message import Message
from functools import lru_cache

from aiosmtpd.smtp import SMTP, Envelope, Session

from email_in.automatic import Automatic, automatic
from email_in.reply import answer_text
from email_in.tokens import Recipient, Tokens
from gateway import replies
from gateway.logs import fields
from gateway.model import Inbound
from gateway.router import Gateway

log = logging.getLogger("seda.email")

_MESSAGE_ID = re.compile(r"^[\x21-\x7e]{1,250}$")
OK = "250 2.0.0 OK"


@dataclass(frozen=True)
class Reading:
    """What a message says, read before anything is stored."""

    machine: Automatic | None
    message_id: str
    text: str


class InboundHandler:
    """aiosmtpd hooks for Seda's reply domain."""

    def __init__(self, gateway: Gateway, tokens: Tokens, domain: str, max_recipients: int):
        self.gateway = gateway
        self.tokens = tokens
        self.domain = domain
        self.max_recipients = max_recipients
        # RCPT and DATA both need the parsed recipient: check each token's HMAC once.
        self.recipient = lru_cache(maxsize=4096)(self._recipient)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept a recipient only if it is ours and carries a genuine token."""
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        _, at, host = address.rpartition("@")
        if not at or host.lower().rstrip(".") != self.domain:
            return "550 5.7.1 Relaying denied"
        if self.recipient(address) is None:
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Read the message and hand it to the gateway; 250 only once it is stored."""
        raw = envelope.original_content or b""
        try:
            reading = read(raw, envelope.mail_from)
        except Exception:
            log.warning("email could not be read")
            return "554 5.6.0 Message could not be read"
        recipients = [self.recipient(address) for address in envelope.rcpt_tos]
        try:
            outcome = await self.receive(reading, [r for r in recipients if r is not None])
        except Exception:
            log.exception("email could not be stored")
            return "451 4.3.0 Try again later"
        return f"{OK} {outcome}"

    async def receive(self, reading: Reading, recipients: list[Recipient]) -> str:
        """Store what one accepted message means: an answer, an opt-out, a bounce, or nothing."""
        machine = reading.machine
        if machine is not None:
            log.info("email automatic", extra=fields(reason=machine.reason))
            if machine.hard_bounced:
                await self._bounced(recipients, machine.hard_bounced)
            if machine.report:
                return "ignored: delivery report"
        outcome = "ignored" if machine is None else "ignored: automatic message"
        seen: set[tuple[str, str]] = set()
        for recipient in recipients:
            key = (recipient.purpose, recipient.response_id)
            if key in seen or recipient.purpose == "bounce":
                continue  # only delivery reports count at the bounce address
            if recipient.purpose == "survey" and machine is not None:
                continue  # an auto-reply is never an answer (and gets none)
            seen.add(key)
            # The core de-duplicates on (channel, provider, message id): one id per recipient.
            message_id = reading.message_id + (f"#{len(seen)}" if len(seen) > 1 else "")
            if recipient.purpose == "unsubscribe":
                # Mail clients send this on the respondent's behalf, some marked automatic.
                outcome = await self._reply(recipient, "STOP", f"unsubscribe.{message_id}")
            else:
                outcome = await self._reply(recipient, reading.text, message_id)
        return outcome

    def _recipient(self, address: str) -> Recipient | None:
        return self.tokens.recipient(address, self.domain)

    async def _reply(self, recipient: Recipient, text: str, message_id: str) -> str:
        row = await self.gateway.store.session(recipient.response_id)
        if row is None or row.channel != "email":
            return "ignored: unknown response"
        # A closed response takes no answers (the address may have a newer one open), but
        # STOP and START still reach the gateway: opting out is about the respondent.
        if row.status != "open" and replies.control_word(text, "email") is None:
            log.info("email ignored", extra=fields(reason="response closed"))
            return "ignored: survey closed"
        inbound = Inbound(
            kind="reply",
            channel="email",
            provider="smtp",
            address=row.address,
            text=text,
            message_id=message_id,
            received_at=self.gateway.clock(),
        )
        result = await self.gateway.receive(inbound)
        log.info(
            "email reply",
            extra=fields(
                outcome=result.outcome, duplicate=result.duplicate, answers=result.answers
            ),
        )
        return f"{result.outcome}{' (duplicate)' if result.duplicate else ''}"

    async def _bounced(self, recipients: list[Recipient], dead: tuple[str, ...]) -> None:
        """End the open response of an address a hard bounce reports, if the token names it."""
        for response_id in dict.fromkeys(r.response_id for r in recipients):
            row = await self.gateway.store.session(response_id)
            if row is None or row.channel != "email" or row.status != "open":
                continue
            if row.address.removeprefix("mailto:").lower() in dead:
                await self.gateway.end("email", row.address, "bounced")
                log.info("email bounced", extra=fields(reason="hard bounce"))


def read(raw: bytes, mail_from: str | None) -> Reading:
    """Parse a message: is it automatic, its id, and the answer a person wrote in it."""
    message = parse(raw)
    machine = automatic(message, mail_from)
    text = "" if machine is not None else answer_text(message)
    return Reading(machine, _message_id(message, raw), text)


def parse(raw: bytes) -> Message:
    """A message as the standard library's email parser reads it.

    The compat32 policy: reading a reply with email.policy.default took 2 ms (its header
    objects), twenty times this; Seda reads a few plain headers and decodes the body itself.
    """
    return email.message_from_bytes(raw)


def _message_id(message: Message, raw: bytes) -> str:
    """The Message-ID without angle brackets; a digest of the message when it has none."""
    try:
        value = str(message.get("Message-ID", "") or "").strip().strip("<>").strip()
    except Exception:  # a malformed header: the digest below identifies retries just as well
        value = ""
    if _MESSAGE_ID.match(value):
        return value
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:40]
