"""The SMTP handler: recipients checked at RCPT, each message read and answered at DATA.

`survey+`, `unsubscribe+` and `bounce+` addresses of the reply domain with a genuine token are
accepted. So is a `survey` address whose token is missing or damaged: at DATA the message is
matched by its In-Reply-To/References (the Message-IDs Seda writes carry the signed token), then
by its From address when that has exactly one open response and (unless authenticity checks
are off) DKIM or SPF vouches for it; a message that matches nothing gets 550 at the end of
DATA. Any other recipient gets 550 at RCPT, so Seda never relays and never bounces.

The sender is checked (DKIM, SPF) per the channel's policy: `record` logs the result (and
checks a message with a genuine token only when that log line is written), `require` refuses
what fails (550, or 451 when DNS did not answer). 250 comes only after the gateway has
committed the answer (it de-duplicates on Message-ID); a failure is 451 so that the sending
server tries again.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from functools import lru_cache

from aiosmtpd.smtp import SMTP, Envelope, Session

from email_in.authenticity import Checker, Verdict
from email_in.automatic import Automatic, automatic
from email_in.reply import answer_texts
from email_in.tokens import MAX_LOCAL_PART, Recipient, Tokens
from gateway import replies
from gateway.logs import fields
from gateway.model import Inbound
from gateway.router import Gateway

log = logging.getLogger("seda.email")

_MESSAGE_ID = re.compile(r"^[\x21-\x7e]{1,250}\Z")
_IDS = re.compile(r"<([^<>\s]{1,250})>")
# The Message-IDs and thread ids Seda writes: <inv.TOKEN.N@reply-domain>, <thread.TOKEN@...>.
_OUR_ID = re.compile(r"^(?:inv|thread)\.([a-z2-7]{42})(?:\.[0-9a-z]{1,64})?@([^@]+)\Z")
_AUTHOR = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}\Z")
MAX_THREAD_IDS = 50
OK = "250 2.0.0 OK"
NOT_MATCHED = (
    "550 5.1.1 This message matches no survey: reply to the survey email itself, "
    "keeping its reply address"
)
NOT_AUTHENTIC = "550 5.7.26 Sender not authenticated: no DKIM signature or SPF pass for its domain"
NOT_CHECKED = "451 4.4.3 Sender authentication could not be completed, try again later"
TOO_COMPLEX = "554 5.6.0 Message structure too complex to read"
# The email package checks every line against every open multipart boundary, on the event loop:
# 900 nested multiparts over 440,000 empty lines (under 1 MiB) took 34 s of CPU, 86 ns a check.
# Mail nests a few levels (a forwarded message in a signed one); past NESTING boundaries, a
# message is read only if boundaries x lines stays under STRUCTURE (about 0.3 s). Each part
# costs about 18 us: a message is read only with at most PARTS lines that may open one.
NESTING = 8
STRUCTURE = 4_000_000
PARTS = 1000
_BOUNDARY = re.compile(rb"boundary", re.IGNORECASE)


@dataclass(frozen=True)
class Reading:
    """What a message says, read before anything is stored."""

    machine: Automatic | None
    message_id: str
    text: str  # the answer paragraph: what scales, yes/no and choice questions read
    author: str | None = None  # the one From address, as written; None for none or several
    threads: tuple[str, ...] = ()  # In-Reply-To, then References newest first (no brackets)
    message: Message | None = field(default=None, compare=False, repr=False)
    full_text: str = ""  # every paragraph before the quote or signature: a text answer

    @property
    def author_domain(self) -> str | None:
        """The domain of the From address, lower-cased."""
        return self.author.rpartition("@")[2].lower() if self.author else None


class InboundHandler:
    """aiosmtpd hooks for Seda's reply domain."""

    def __init__(
        self,
        gateway: Gateway,
        tokens: Tokens,
        domain: str,
        max_recipients: int,
        checker: Checker | None = None,
    ):
        self.gateway = gateway
        self.tokens = tokens
        self.domain = domain
        self.max_recipients = max_recipients
        self.checker = checker  # None: authenticity policy off
        self.require = checker is not None and checker.settings.policy == "require"
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
        """Accept a recipient of ours with a genuine token, or a survey address to match later."""
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        _, at, host = address.rpartition("@")
        if not at or host.lower().rstrip(".") != self.domain:
            return "550 5.7.1 Relaying denied"
        if self.recipient(address) is None and not _survey_address(address):
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Read the message and hand it to the gateway; 250 only once it is stored."""
        raw = envelope.original_content or b""
        if too_complex(raw):
            log.warning("email refused", extra=fields(reason="structure too complex to read"))
            return TOO_COMPLEX
        try:
            reading = read(raw, envelope.mail_from)
        except Exception:
            log.warning("email could not be read")
            return "554 5.6.0 Message could not be read"
        found = [self.recipient(address) for address in envelope.rcpt_tos]
        recipients = [r for r in found if r is not None]
        verdict = None
        if self._checks(recipients):
            verdict = await self._authenticate(raw, reading, session, envelope)
        refusal = self._refusal(verdict, reading, recipients)
        if refusal is not None:
            return refusal
        if not recipients:  # only survey addresses without a genuine token
            if reading.machine is not None:
                log.info("email automatic", extra=fields(reason=reading.machine.reason))
                return f"{OK} ignored: automatic message"
            try:
                matched = await self.correlate(reading, verdict)
            except Exception:
                log.exception("email could not be matched")
                return "451 4.3.0 Try again later"
            if matched is None:
                log.info("email refused", extra=fields(reason="matches no survey"))
                return NOT_MATCHED
            recipients = [matched]
        try:
            outcome = await self.receive(reading, recipients)
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
                stop = Reading(None, message_id, "STOP")
                outcome = await self._reply(recipient, stop, f"unsubscribe.{message_id}")
            else:
                outcome = await self._reply(recipient, reading, message_id)
        return outcome

    async def correlate(self, reading: Reading, verdict: Verdict | None) -> Recipient | None:
        """The response a message without a genuine reply token answers, if one is certain.

        First the thread: a Message-ID Seda wrote, named in In-Reply-To or References, carries
        the response's signed token. Then the From address, when it has exactly one open email
        response and (with authenticity checks on) DKIM or SPF vouches for its domain.
        """
        for message_id in reading.threads:
            match = _OUR_ID.match(message_id.lower())
            if match is None or match[2].rstrip(".") != self.domain:
                continue
            response_id = self.tokens.verify(match[1])
            if response_id is not None:
                log.info("email matched", extra=fields(by="thread"))
                return Recipient("survey", response_id, match[1])
        if reading.author is None or (verdict is not None and not verdict.aligned):
            return None
        rows = {}
        for spelling in _spellings(reading.author):
            row = await self.gateway.store.open_session("email", f"mailto:{spelling}")
            if row is not None:
                rows[row.response_id] = row
        if len(rows) != 1:
            return None
        log.info("email matched", extra=fields(by="from"))
        return Recipient("survey", next(iter(rows)), "")

    def _checks(self, recipients: list[Recipient]) -> bool:
        """Whether to check who sent this message: whenever a policy other than `off` is set.

        Under `require` the verdict decides, without a genuine token the From fallback needs it,
        and under `record` it is logged for every reply (whatever the log level: what Seda does
        must not depend on what it logs).
        """
        return self.checker is not None

    async def _authenticate(
        self, raw: bytes, reading: Reading, session: Session, envelope: Envelope
    ) -> Verdict | None:
        if self.checker is None or reading.message is None:
            return None
        peer = session.peer
        peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else None
        verdict = await self.checker.check(
            raw,
            reading.message,
            reading.author_domain,
            peer_ip,
            session.host_name,
            envelope.mail_from,
        )
        log.info("email authenticity", extra=fields(**verdict.fields()))
        return verdict

    def _refusal(
        self, verdict: Verdict | None, reading: Reading, recipients: list[Recipient]
    ) -> str | None:
        """The reply under `require` to a message that is not authenticated, else None."""
        if verdict is None or verdict.aligned or not self.require:
            return None
        if _report_to_bounce_address(reading, recipients):
            return None
        log.info("email refused", extra=fields(reason="not authenticated"))
        return NOT_CHECKED if verdict.temporary else NOT_AUTHENTIC

    def _recipient(self, address: str) -> Recipient | None:
        return self.tokens.recipient(address, self.domain)

    async def _reply(self, recipient: Recipient, reading: Reading, message_id: str) -> str:
        text = reading.text
        cached = self.gateway.cached_open_response(recipient.response_id)
        if cached is not None and cached.channel == "email":
            address = cached.address
            survey_id, question_id = cached.survey_id, cached.question_id
        else:
            row = await self.gateway.store.session(recipient.response_id)
            if row is None or row.channel != "email":
                return "ignored: unknown response"
            # A closed response takes no answers (the address may have a newer one open), but
            # STOP and START still reach the gateway: opting out is about the respondent.
            if row.status != "open" and replies.control_word(text, "email") is None:
                log.info("email ignored", extra=fields(reason="response closed"))
                return "ignored: survey closed"
            address = row.address
            survey_id, question_id = row.survey_id, row.data.get("question_id")
        if self._takes_text(survey_id, question_id) and replies.control_word(text, "email") is None:
            text = reading.full_text or text  # a free-text answer keeps all its paragraphs
        inbound = Inbound(
            kind="reply",
            channel="email",
            provider="smtp",
            address=address,
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

    def _takes_text(self, survey_id: str, question_id: object) -> bool:
        """Whether the response's open question is a free-text one (as far as the cache or
        the stored session knows; the engine reads the question again under its lock)."""
        survey = self.gateway.surveys.get(survey_id)
        if survey is None or not isinstance(question_id, str):
            return False
        try:
            return survey.question(question_id).type == "text"
        except KeyError:
            return False

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
    text, full_text = ("", "") if machine is not None else answer_texts(message)
    return Reading(
        machine,
        _message_id(message, raw),
        text,
        author=_author(message),
        threads=_threads(message),
        message=message,
        full_text=full_text,
    )


def too_complex(raw: bytes) -> bool:
    """Whether parsing would cost more than any real reply can (every nested multipart needs a
    `boundary` parameter: counting the word bounds the nesting from above)."""
    boundaries = len(_BOUNDARY.findall(raw))
    if boundaries > NESTING and boundaries * raw.count(b"\n") > STRUCTURE:
        return True
    return boundaries > 0 and raw.count(b"\n--") > PARTS


def parse(raw: bytes) -> Message:
    """A message as the standard library's email parser reads it.

    The compat32 policy: reading a reply with email.policy.default took 2 ms (its header
    objects), twenty times this; Seda reads a few plain headers and decodes the body itself.
    """
    return email.message_from_bytes(raw)


def _survey_address(address: str) -> bool:
    """`survey@…` or `survey+…@…`: a reply address whose token may have been lost or damaged."""
    local = address.rpartition("@")[0]
    prefix = local.lower().partition("+")[0]
    return prefix == "survey" and len(local.encode("utf-8")) <= MAX_LOCAL_PART


def _report_to_bounce_address(reading: Reading, recipients: list[Recipient]) -> bool:
    """A delivery report to a genuine bounce+TOKEN address (MTAs rarely sign their DSNs)."""
    machine = reading.machine
    report = machine is not None and machine.report
    return report and any(r.purpose == "bounce" for r in recipients)


def _author(message: Message) -> str | None:
    try:
        values = [str(v) for v in message.get_all("From") or []]
        if len(values) == 1 and _AUTHOR.fullmatch(values[0]):
            return values[0]  # a bare address, as most are: getaddresses would return it as is
        addresses = [address for _, address in getaddresses(values) if address]
    except Exception:
        return None
    if len(addresses) != 1 or not _AUTHOR.match(addresses[0]):
        return None
    return addresses[0]


def _threads(message: Message) -> tuple[str, ...]:
    try:
        replying = _IDS.findall(str(message.get("In-Reply-To", "") or ""))
        references = _IDS.findall(str(message.get("References", "") or ""))
    except Exception:
        return ()
    ids = [*replying, *reversed(references)]
    return tuple(dict.fromkeys(ids))[:MAX_THREAD_IDS]


def _spellings(address: str) -> list[str]:
    """An address as written, with its domain lower-cased, and all lower-case."""
    local, _, domain = address.rpartition("@")
    return list(dict.fromkeys([address, f"{local}@{domain.lower()}", address.lower()]))


def _message_id(message: Message, raw: bytes) -> str:
    """The Message-ID without angle brackets; a digest of the message when it has none."""
    try:
        value = str(message.get("Message-ID", "") or "").strip().strip("<>").strip()
    except Exception:  # a malformed header: the digest below identifies retries just as well
        value = ""
    if _MESSAGE_ID.match(value):
        return value
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:40]
