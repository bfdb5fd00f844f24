"""The SMS channel: one webhook per line, replies in the webhook or through the provider's API."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.core import Metric

from gateway import engine, metrics
from gateway.backends import DeliveryError
from gateway.flows.loader import Problem
from gateway.logs import fields
from gateway.model import Inbound
from gateway.results import EXPIRED, NO_OPEN_SURVEY, Rejected, Result
from gateway.router import Gateway
from gateway.store_schema import StoreError, delivery_moves
from sms.base import (
    AccountRefused,
    Concatenating,
    Ignored,
    Line,
    Part,
    Poller,
    Provider,
    Receipt,
    Received,
    Refused,
    StatusPoller,
    TokenBucket,
    same_number,
    tel,
)
from sms.holds import Holds
from sms.lines import ACCOUNT_HOLD, ConfigError, parse, render, with_footer
from sms.parts import HeldParts
from sms.polling import PollLoop
from sms.segments import encoding, segments

log = logging.getLogger("seda.sms")

STATUS_HORIZON = timedelta(hours=24)  # sent messages are asked about for this long at most
STATUS_BATCHES = 10  # status requests per line per round at most
# A receipt can come before its message is recorded (providers call back as soon as they have
# accepted the message, while Seda still waits for the send API's answer): such a receipt is held
# this long, and applied when its message is recorded. At most EARLY_CAP are held.
EARLY_WAIT = 300.0  # seconds
EARLY_CAP = 10_000


class SmsChannel:
    """SMS lines at Twilio, Vonage, Plivo, Kannel, Jasmin, the Iranian providers (Kavenegar,
    SMS.ir, Ghasedak, Melipayamak; polled) or a generic gateway."""

    name = "sms"

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]) -> None:
        self.gateway = gateway
        settings = parse(spec, gateway.surveys, self._now)
        self.max_body = settings.max_body
        self.lines = settings.lines
        self.default_line = settings.default_line
        self.providers = settings.providers
        self.buckets = {n: TokenBucket(x.rate) for n, x in self.lines.items() if x.rate}
        self.ignored: dict[tuple[str, str], int] = {}  # (line, reason) -> count
        self.receipts: dict[tuple[str, str], int] = {}  # (line, status) -> count
        # Receipts that named no recorded message, by (provider, message id): (line, receipt,
        # when it came, by the monotonic clock), oldest first.
        self._early: dict[tuple[str, str], list[tuple[Line, Receipt, float]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._polls: list[PollLoop] = []
        self.held: dict[str, HeldParts] = {}  # line -> parts of long messages (started lines)
        # Lines whose provider refused the account (every line of that account: the same
        # credentials), held for account_hold; a send that goes through frees them.
        self.holds = Holds(self.lines, lambda: self.gateway.clock())
        self.send_failures: dict[tuple[str, str], int] = {}  # (line, kind) -> count
        gateway.countries.update(x.country for x in self.lines.values() if x.country)
        gateway.erasers.append(self.erase)

    def _now(self) -> float:
        return self.gateway.clock().timestamp()

    def invitation_address(self, address: str, line: str | None) -> str:
        """tel:+E.164, as the line's replies will carry it: a national number (0912...) takes
        the line's country. ValueError for another scheme, a non-number or an unknown line."""
        chosen = self.lines.get(line) if line else self.lines[self.default_line]
        if chosen is None:
            raise ValueError(f"no line {line!r} (lines: {', '.join(self.lines)})")
        scheme, _, number = address.partition(":")
        if scheme != "tel":
            raise ValueError("an SMS invitation goes to a tel: address, such as tel:+989121234567")
        try:
            return tel(number, chosen.country)
        except Refused:
            raise ValueError(
                f"the respondent is not a phone number line {chosen.name} can reach: write it as"
                " tel:+<country code><number>, or set the line's country for national numbers"
            ) from None

    def routes(self) -> list[web.RouteDef]:
        """POST (and GET, for providers that use it) /sms/{line}."""
        return [web.post("/sms/{line}", self.webhook), web.get("/sms/{line}", self.webhook)]

    async def start(self) -> None:
        """Warn about unsigned lines, read the parts of long messages held before a restart and
        start polling the lines that are polled."""
        for line in self.lines.values():
            if not line.verify:
                log.warning(
                    "SIGNATURE CHECKS ARE OFF for this SMS line: anyone can post answers to it",
                    extra=fields(line=line.name, provider=line.provider),
                )
        folder = self.gateway.store.folder
        for name, provider in self.providers.items():
            if isinstance(provider, Concatenating):
                parts = folder / "spool" / f"sms-{name}.parts" if folder is not None else None
                held = HeldParts(self.lines[name], parts, self._now, provider.concat_timeout)
                self.held[name] = held
                held.start(self._receive)
            if isinstance(provider, Poller):
                line = self.lines[name]
                statuses = None
                if isinstance(provider, StatusPoller):
                    statuses = functools.partial(self.poll_statuses, line, provider)
                spool = folder / "spool" / f"sms-{name}.spool" if folder is not None else None
                loop = PollLoop(line, provider, self._receive_polled, self.http, statuses, spool)
                self._polls.append(loop)
                loop.start()

    async def erase(self, addresses: frozenset[str]) -> int:
        """An erased respondent (every spelling of their address, lower-case): drop the parts
        of long messages held from them, not whole yet; returns how many part files went.
        (A polled line's spool holds a message only until the store takes it: while the store
        fails, so does the erasure.)"""
        files = 0
        for held in self.held.values():
            files += await held.erase(addresses)
        return files

    async def stop(self) -> None:
        """Stop polling and holding parts (they stay on disk); close the HTTP client."""
        for loop in self._polls:
            await loop.stop()
        self._polls.clear()
        for held in self.held.values():
            await held.stop()
        self.held.clear()
        await self.close()

    async def close(self) -> None:
        """Release the provider connections."""
        http, self._http = self._http, None  # cleared first: a send meanwhile opens a new one
        if http is not None:
            await http.close()

    def http(self) -> aiohttp.ClientSession:
        """The one client session for every provider API."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """A provider's request for one line: accepted, ignored or rejected."""
        name = request.match_info["line"]
        line = self.lines.get(name)
        if line is None:
            return web.json_response({"status": "ignored", "reason": "unknown line"})
        provider = self.providers[name]
        if request.method not in provider.methods:
            raise web.HTTPMethodNotAllowed(request.method, list(provider.methods))
        if (request.content_length or 0) > self.max_body:
            return _refusal(Refused(413, f"the body is larger than {self.max_body} bytes"))
        url = _public_url(request, line)
        try:
            parsed = await provider.parse(request, url)
            if isinstance(parsed, Part):
                return await self._receive_part(line, provider, parsed)
        except Refused as exc:
            log.warning(
                "sms request refused", extra=fields(line=name, status=exc.status, reason=exc.reason)
            )
            return _refusal(exc)
        if isinstance(parsed, Receipt):
            await self._record_receipt(line, parsed)
            return provider.answer(None)
        if isinstance(parsed, Ignored):
            return self._ignore(line, provider, parsed.reason)
        result = await self._receive(line, parsed)
        if line.reply == "webhook" and result.outbound:
            text = self._with_footer(line, render([o.to_json() for o in result.outbound]))
            return provider.answer(text)
        return provider.answer(None)

    def _ignore(self, line: Line, provider: Provider, reason: str) -> web.Response:
        key = (line.name, reason)
        self.ignored[key] = self.ignored.get(key, 0) + 1
        log.info("sms request ignored", extra=fields(line=line.name, reason=reason))
        return provider.answer(None)

    async def _receive_part(self, line: Line, provider: Provider, part: Part) -> web.Response:
        """Hold a part on disk (before the 2xx: the provider will not send it again); when it
        completes its message, hand the message to the core and clear the parts."""
        held = self.held.get(line.name)
        if held is None:
            raise Refused(503, "the channel is not started")
        wholes = await held.hold(part)
        if isinstance(wholes, str):
            return self._ignore(line, provider, wholes)
        for n, whole in enumerate(wholes):  # in order: a message set apart comes first
            try:
                await self._receive(line, whole.message)
            except BaseException:
                for left in wholes[n:]:  # still on disk: a retry of this part, or the sweep
                    held.release(left)
                raise
            await held.recorded_whole(whole)
        return provider.answer(None)  # providers that post parts reply through their API

    async def _record_receipt(self, line: Line, receipt: Receipt, held: bool = False) -> None:
        """Apply a receipt to the sent message it names. One for a message not recorded (yet)
        is counted as unknown, changes nothing and is held for EARLY_WAIT seconds: if its
        message is recorded meanwhile, it is applied then (and counted under its status)."""
        known = await self.gateway.store.deliveries.record_receipt(
            "sms", line.provider, receipt.message_id, receipt.status, receipt.raw_status,
            receipt.error, self.gateway.clock(),
        )  # fmt: skip
        if not known and held:
            return  # its message is recorded, so this cannot happen but for a store error
        status = receipt.status if known else "unknown"
        key = (line.name, status)
        self.receipts[key] = self.receipts.get(key, 0) + 1
        if known:
            event = "sms receipt applied after its message was recorded" if held else "sms receipt"
        else:
            event = "sms receipt for a message Seda has not recorded: held"
            self._hold(line, receipt)
        log.info(event, extra=fields(line=line.name, provider=line.provider, status=status,
                                     error=receipt.error))  # fmt: skip

    def _hold(self, line: Line, receipt: Receipt) -> None:
        now = time.monotonic()
        while self._early:  # drop what has waited too long, and the oldest beyond the cap
            oldest = next(iter(self._early))
            held = self._early[oldest]
            if now - held[0][2] < EARLY_WAIT and len(self._early) < EARLY_CAP:
                break
            del self._early[oldest]
        self._early.setdefault((line.provider, receipt.message_id), []).append((line, receipt, now))

    async def _apply_held(self, provider: str, message_ids: Iterable[str]) -> None:
        """Apply the receipts that came before these messages were recorded, in arrival order."""
        now = time.monotonic()
        for message_id in message_ids:
            for line, receipt, came in self._early.pop((provider, message_id), []):
                if now - came < EARLY_WAIT:
                    await self._record_receipt(line, receipt, held=True)

    async def poll_statuses(self, line: Line, provider: StatusPoller) -> int:
        """Ask a polled provider for the status of the line's messages sent in the last 24
        hours whose delivery is not known yet; record those that moved. Returns how many."""
        since = self.gateway.clock() - STATUS_HORIZON
        pending = await self.gateway.store.deliveries.pending(
            "sms", line.name, since, provider.batch * STATUS_BATCHES
        )
        current = {r["message_id"]: r["status"] for r in pending if r["provider"] == line.provider}
        ids = list(current)
        moved = 0
        for start in range(0, len(ids), provider.batch):
            for receipt in await provider.statuses(
                self.http(), ids[start : start + provider.batch]
            ):
                old = current.get(receipt.message_id)
                if old is None or not delivery_moves(old, receipt.status):
                    continue  # not one asked about, or nothing new: not a receipt to count
                await self._record_receipt(line, receipt)
                moved += 1
        return moved

    def health(self) -> dict[str, Any]:
        """For /healthz: degraded while a polled line's polls fail (the messages wait at the
        provider) or its loop has stopped; lines that are pushed to say nothing here."""
        lines = {loop.line.name: loop.health() for loop in self._polls}
        troubled = any(line["polling"] != "ok" for line in lines.values())
        refused = self.holds.held
        found: dict[str, Any] = {"status": "degraded" if troubled or refused else "ok"}
        if lines:
            found["polled_lines"] = lines
        if refused:  # the provider refused the account: nothing goes out on these lines
            found["refused_lines"] = {
                name: {"sending": "refused", "since": hold.since.isoformat(),
                       "reason": hold.reason}
                for name, hold in sorted(refused.items())
            }  # fmt: skip
        return found

    def metric_families(self) -> Iterable[Metric]:
        """The channel's own counters for /metrics (server.py collects them)."""
        yield metrics.counter_family(
            "seda_sms_receipts",
            "SMS delivery receipts by line and normalised status (unknown: no such message"
            " recorded when it came; one whose message is recorded within 5 minutes is applied"
            " then and counted again under its status)",
            ["line", "status"],
            {k: float(v) for k, v in self.receipts.items()},
        )
        yield metrics.counter_family(
            "seda_sms_send_failures",
            "SMS sends that failed, by line and kind (account: the provider refused the line's"
            " account, retried; message: refused for good, to the dead letter; retried:"
            " throttled, unreachable or a 5xx)",
            ["line", "kind"],
            {k: float(v) for k, v in self.send_failures.items()},
        )

    async def _receive_polled(self, line: Line, message: Received) -> Any:
        """A polled message: on the line it was sent to (one account may serve several)."""
        if message.to is None or same_number(message.to, line.number):
            return await self._receive(line, message)
        for other in self.lines.values():
            if other.provider == line.provider and same_number(message.to, other.number):
                return await self._receive(other, message)
        # A number of the account that Seda does not serve: not a reply to any survey here.
        key = (line.name, "message to a number Seda does not serve")
        self.ignored[key] = self.ignored.get(key, 0) + 1
        log.warning("sms polled message ignored: sent to a number no line here has",
                    extra=fields(line=line.name, provider=line.provider))  # fmt: skip
        return None

    async def _receive(self, line: Line, message: Received) -> Any:
        """Hand one message to the core; returns after the commit."""
        inbound = Inbound(
            kind="reply",
            channel="sms",
            provider=line.provider,
            address=message.sender,
            received_at=self.gateway.clock(),
            text=message.text,
            message_id=message.message_id,
            line=line.name,
            answered_inline=line.reply == "webhook",
        )
        result = await self.gateway.receive(inbound)
        # A reply to a survey that has expired meets no open survey, whether the expiry sweep
        # closed it before (NO_OPEN_SURVEY) or this reply did (EXPIRED).
        if result.reason in (NO_OPEN_SURVEY, EXPIRED) and line.default_survey is not None:
            result = await self._start_default(line, message)
        if log.isEnabledFor(logging.INFO):  # the fields are built only for a record that is kept
            log.info(
                "sms received",
                extra=fields(line=line.name, outcome=result.outcome, duplicate=result.duplicate),
            )
        return result

    async def _start_default(self, line: Line, message: Received) -> Result:
        """A message that matched no open survey, on a line with a default survey: start it for
        the sender, in the language the message is written in when the survey has it. The
        message itself answers nothing (it is what the respondent wrote to reach us). Its
        first prompts go as an invitation's do (the outbox; quiet hours apply), and the
        provider's message id keeps a retried webhook from starting it twice."""
        survey = self.gateway.surveys[str(line.default_survey)]
        language = engine.guess_language(message.text)
        inbound = Inbound(
            "start",
            "sms",
            line.provider,
            message.sender,
            self.gateway.clock(),
            survey_id=survey.id,
            language=language if language in survey.languages else None,
            context={"source": "sms_unsolicited"},
            line=line.name,
        )
        try:
            started = await self.gateway.invite(inbound, invitation_id=message.message_id)
        except Rejected as exc:  # opted out, most likely: nothing to start
            return Result("ignored", str(exc))
        # Its prompts are in the outbox already: none for the webhook's own answer.
        return dataclasses.replace(started, outbound=())

    async def deliver(self, event: dict[str, Any]) -> None:
        """Send one step's prompts (those answered in a webhook response never come here)."""
        data = event["data"]
        line = self._line_for(data)
        text = self._with_footer(line, render(data.get("prompts", [])))
        parts = segments(text)
        if parts > line.max_segments:
            raise DeliveryError(
                f"the message needs {parts} SMS parts; line {line.name} allows {line.max_segments}"
                " (shorten the survey text or raise max_segments)",
                retryable=False,
            )
        hold = self.holds.holding(line)
        if hold is not None:
            self._count_failure(line, "account")
            raise AccountRefused(f"line {line.name} is held: {hold.reason}")
        bucket = self.buckets.get(line.name)
        if bucket is not None:
            await bucket.take()
        try:
            sent = await self.providers[line.name].send(
                self.http(), data["address"], text, event["id"]
            )
        except AccountRefused as exc:
            self._refuse(line, exc)
            raise
        except DeliveryError as exc:
            self._count_failure(line, "retried" if exc.retryable else "message")
            raise
        freed = self.holds.sent(line)
        if freed:
            log.warning("sms line sends again", extra=fields(line=line.name,
                        provider=line.provider, lines=freed))  # fmt: skip
        log.info(
            "sms sent",
            extra=fields(line=line.name, provider=line.provider, segments=parts,
                         encoding=encoding(text), response_id=data.get("response_id"),
                         provider_ids=sent),
        )  # fmt: skip
        await self._record_sent(line, event, sent)

    def _refuse(self, line: Line, exc: AccountRefused) -> None:
        """The provider refused the line's account: hold the line (and the account's other
        lines, for a refusal of the whole account), say so (once a streak)."""
        self._count_failure(line, "account")
        hold = _hold_seconds(line)
        fresh = self.holds.refuse(line, str(exc), exc.whole_account, _hold_seconds)
        if fresh:  # a new streak for some line (held now with the account, or on its own)
            log.error(
                "sms line refused by its provider: its messages wait; check the line's"
                " credentials, credit and sender number",
                extra=fields(line=line.name, provider=line.provider, error=str(exc), hold=hold,
                             lines=fresh),
            )  # fmt: skip

    def _count_failure(self, line: Line, kind: str) -> None:
        key = (line.name, kind)
        self.send_failures[key] = self.send_failures.get(key, 0) + 1

    async def _record_sent(self, line: Line, event: Mapping[str, Any], ids: list[str]) -> None:
        """One deliveries row per provider id, status sent (its receipts update it)."""
        at = self.gateway.clock()
        rows = [{"channel": "sms", "line": line.name, "provider": line.provider,
                 "message_id": message_id, "response_id": event["data"].get("response_id"),
                 "event_id": str(event["id"]), "at": at} for message_id in ids]  # fmt: skip
        if not rows:
            return
        try:
            await self.gateway.store.deliveries.record_sent(rows)
        except StoreError as exc:  # the SMS is out: failing now would only send it again
            log.error(
                "sms sent but not recorded: its receipts will count as unknown",
                extra=fields(line=line.name, provider=line.provider, error=str(exc)),
            )
            return
        if self._early:
            await self._apply_held(line.provider, ids)

    def _line_for(self, data: Mapping[str, Any]) -> Line:
        # The core names the line the respondent used; an invitation without one takes the default.
        name = data.get("line")
        line = self.lines.get(str(name)) if name else None
        return line if line is not None else self.lines[self.default_line]

    @staticmethod
    def _with_footer(line: Line, text: str) -> str:
        return with_footer(line.footer, text)

    @staticmethod
    def check_settings(spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """`seda validate` and `seda run`: every problem of the block, line by line."""
        try:
            parse(spec, surveys, time.time)
        except ConfigError as exc:
            return str(exc).split("\n")
        return []

    @staticmethod
    def check_surveys(spec: Mapping[str, Any], paths: Sequence[Path]) -> list[Problem]:
        """`seda validate`: a warning for each survey message longer than a line allows."""
        from sms.checks import check_surveys

        return check_surveys(spec, paths)


def _public_url(request: web.Request, line: Line) -> str:
    """The URL the provider called: public_url (behind a proxy) plus the query as sent."""
    raw = request.raw_path  # path and query exactly as sent (the signature covers them)
    if not line.public_url:
        return f"{request.scheme}://{request.host}{raw}"
    _, mark, query = raw.partition("?")
    return line.public_url + mark + query


def _refusal(exc: Refused) -> web.Response:
    return web.json_response({"status": "rejected", "reason": exc.reason}, status=exc.status)


def _hold_seconds(line: Line) -> float:
    """How long the line sends nothing after its provider refused the account."""
    return float(line.spec.get("account_hold", ACCOUNT_HOLD))
