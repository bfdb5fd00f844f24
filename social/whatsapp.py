"""WhatsApp Cloud API: the webhook (verification and signed events) and prompts via Graph.

Events are verified on their raw bytes (X-Hub-Signature-256) before they are parsed, and
acknowledged only after the gateway committed every message in them; a redelivery is
recognised by its wamid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client.core import Metric

from gateway import metrics
from gateway.backends import DeliveryError
from gateway.config import ConfigError, Problems
from gateway.logs import fields
from gateway.model import Inbound
from gateway.results import Rejected, Result, dedupe_key
from gateway.router import Gateway
from gateway.secret import same_secret
from gateway.session import Session
from social.common import (
    Memory,
    Progress,
    answer,
    button_codes,
    entries,
    number,
    open_question,
    refuse,
    text,
    with_scales,
)
from social.notices import Notices
from social.rate_limits import RecipientHolds
from social.voice import Refused, VoiceNotes
from social.whatsapp_graph import GraphClient, MediaError
from social.whatsapp_messages import Incoming, incoming, outgoing, template

log = logging.getLogger("seda.whatsapp")

CHANNEL = "whatsapp"
GRAPH_BASE = "https://graph.facebook.com/v21.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
STATUSES = ("sent", "delivered", "read", "failed")  # what Meta's status callbacks say
WINDOW = timedelta(hours=24)  # the customer-service window opened by the user's last message
MAX_CHALLENGE = 256
_ADDRESS = re.compile(r"^whatsapp:\+?([0-9]{5,20})\Z")


@dataclass(frozen=True)
class WhatsAppLine:
    """One business phone number of the Cloud API and the app that receives its webhooks."""

    name: str
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    graph_base: str
    template: tuple[str, str | None] | None  # invitation template: (name, language code)

    def __repr__(self) -> str:
        return f"WhatsAppLine({self.name!r}, phone_number_id={self.phone_number_id!r})"


class WhatsAppChannel:
    """GET/POST /whatsapp/{line}; prompts as reply buttons, lists, text or a template."""

    name = CHANNEL
    checks_whole_block = True  # check_settings looks up every key, past every mistake

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]):
        self.gateway = gateway
        self.lines = {n: _line(n, e) for n, e in entries(spec, "lines", CHANNEL).items()}
        timeout = number(spec, "timeout", f"channels.{CHANNEL}", 10.0)
        self._graph = GraphClient(timeout=timeout or 10.0)
        self._progress = Progress()
        self._holds = RecipientHolds()  # numbers waiting out a pair rate limit (131056)
        self.voice = VoiceNotes(spec, f"channels.{CHANNEL}")
        self.notices = Notices(gateway)
        # When each address last wrote to us: in memory only (see README: after a restart,
        # invitations use the template until the respondent writes again).
        self._last_inbound: dict[str, datetime] = {}
        # The question each interactive message sent asked (wamid -> response id, question id),
        # in memory: a tap on an earlier question's list is told from a tap on the current one.
        self._asked: Memory[tuple[object, object]] = Memory(100_000)
        # Status callbacks by line and status (sent, delivered, read, failed), for /metrics.
        self.statuses: dict[tuple[str, str], int] = {}

    @staticmethod
    def check_settings(spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """`seda validate` and `seda run`: every mistake of the block as the channel reads it
        at start (of every line, the timeout, the voice block), one line each."""
        problems = Problems()
        for name, entry in entries(spec, "lines", CHANNEL, problems).items():
            problems.value(partial(_line, name, entry), None)
        problems.value(partial(number, spec, "timeout", f"channels.{CHANNEL}", 10.0), None)
        problems.value(partial(VoiceNotes, spec, f"channels.{CHANNEL}"), None)
        return problems.lines

    def invitation_address(self, address: str, line: str | None) -> str:
        """whatsapp:+<number>, as the line's webhooks write the sender; ValueError for anything
        else or an unknown line."""
        if line and line not in self.lines:
            raise ValueError(f"no line {line!r} (lines: {', '.join(self.lines)})")
        match = _ADDRESS.match(address)
        if match is None:
            raise ValueError("a WhatsApp invitation goes to whatsapp:+<number>")
        return f"whatsapp:+{match.group(1)}"

    def routes(self) -> list[web.RouteDef]:
        """The verification and event routes every line shares."""
        return [
            web.get("/whatsapp/{line}", self.verify),
            web.post("/whatsapp/{line}", self.events),
        ]

    async def start(self) -> None:
        """Nothing to start: events arrive on Seda's HTTP server."""

    async def stop(self) -> None:
        """Nothing to stop (the Graph client closes in close())."""

    async def close(self) -> None:
        """Close the Graph API connections."""
        await self._graph.close()

    async def verify(self, request: web.Request) -> web.Response:
        """GET /whatsapp/{line}: Meta's subscription check; the raw hub.challenge back."""
        line = self.lines.get(request.match_info["line"])
        if line is None:
            return refuse(404, "no such line")
        query = request.query
        challenge = query.get("hub.challenge", "")
        if (
            query.get("hub.mode") == "subscribe"
            and same_secret(query.get("hub.verify_token"), line.verify_token)
            and 0 < len(challenge) <= MAX_CHALLENGE
        ):
            return web.Response(text=challenge, content_type="text/plain")
        return refuse(403, "verification failed")

    async def events(self, request: web.Request) -> web.Response:
        """POST /whatsapp/{line}: signed events; 200 once every message in them is stored."""
        line = self.lines.get(request.match_info["line"])
        if line is None:
            return refuse(404, "no such line")
        raw = await request.read()
        if not signed(raw, request.headers.get(SIGNATURE_HEADER), line.app_secret):
            return refuse(403, f"missing or wrong {SIGNATURE_HEADER}")
        try:
            body = json.loads(raw)
            values = list(_message_values(body))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return refuse(400, "the body is not a WhatsApp Business Account event in JSON")
        if body.get("object") != "whatsapp_business_account":
            return answer("ignored", "not a WhatsApp Business Account event")
        accepted = ignored = 0
        for value in values:
            for got in await self._receive(line, value):
                accepted, ignored = accepted + got, ignored + (1 - got)
        if not accepted and not ignored:
            return answer("ignored", "no messages (status callbacks carry no answers)")
        status = "accepted" if accepted else "ignored"
        return answer(status, accepted=accepted, ignored=ignored)

    async def deliver(self, event: dict[str, Any]) -> None:
        """Send the prompts through the Graph API; a template outside the 24-hour window."""
        data = event["data"]
        line = self._line_of(data)
        address = str(data.get("address", ""))
        match = _ADDRESS.match(address)
        if match is None:
            raise DeliveryError("not a whatsapp:+<number> address", retryable=False)
        to = match.group(1)
        prompts = await with_scales(self.gateway, data)
        asks = any(p.get("kind") == "prompt" for p in prompts)
        messages: list[tuple[Mapping[str, Any], dict[str, Any]]]
        if line.template is not None and asks and not self._window_open(address):
            name, language = line.template
            language = language or str(data.get("language", "en"))
            messages = [({}, template(to, name, language))]
        else:
            messages = [(p, message) for p in prompts for message in outgoing(p, to)]
        event_id = str(event.get("id", ""))
        self._holds.check(line.name, to)
        for index, (prompt, message) in enumerate(messages):
            if index < self._progress.sent(event_id):
                continue  # sent by an earlier attempt of this event
            try:
                wamid = await self._graph.send(
                    line.graph_base, line.phone_number_id, line.access_token, message
                )
            except DeliveryError as exc:
                if exc.recipient:  # a pair rate limit: this number waits, the others go on
                    self._holds.refused(line.name, to, exc, spreads=False)
                raise
            if wamid is not None and message["type"] == "interactive":
                self._asked.remember(wamid, (data.get("response_id"), prompt.get("question_id")))
            self._progress.advance(event_id)
        self._progress.finish(event_id)

    def _statuses(self, line: WhatsAppLine, statuses: object) -> None:
        """Count status callbacks; a failed one is logged with Meta's error code (131047: the
        24-hour window closed; 131026: not a WhatsApp number...), never the recipient."""
        for status in statuses if isinstance(statuses, list) else []:
            if not isinstance(status, Mapping) or not isinstance(status.get("status"), str):
                continue
            kind = status["status"] if status["status"] in STATUSES else "other"
            key = (line.name, kind)
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if kind == "failed":
                errors = status.get("errors")
                first = errors[0] if isinstance(errors, list) and errors else None
                code = first.get("code") if isinstance(first, Mapping) else None
                code = code if isinstance(code, int) and not isinstance(code, bool) else None
                log.warning(
                    "whatsapp message not delivered", extra=fields(line=line.name, code=code)
                )

    def metric_families(self) -> Iterable[Metric]:
        """The channel's own counters for /metrics (server.py collects them)."""
        yield metrics.counter_family(
            "seda_whatsapp_statuses",
            "WhatsApp status callbacks by line and status (failed ones are logged with their"
            " error code)",
            ["line", "status"],
            {k: float(v) for k, v in self.statuses.items()},
        )

    async def _receive(self, line: WhatsAppLine, value: Mapping[str, Any]) -> list[int]:
        """Each message of one change to the gateway, in order: 1 accepted, 0 ignored."""
        messages = value.get("messages")
        messages = messages if isinstance(messages, list) else []
        metadata = value.get("metadata")
        number = metadata.get("phone_number_id") if isinstance(metadata, Mapping) else None
        owner = self._line_for(str(number), line)
        if owner is None:
            log.warning("event for a phone number no line has", extra=fields(line=line.name))
            return [0 for _ in messages]
        self._statuses(owner, value.get("statuses"))
        outcomes = []
        for message in messages:
            got = incoming(message) if isinstance(message, Mapping) else None
            if got is None:
                outcomes.append(0)
                continue
            address = f"whatsapp:+{got.sender}"
            self._seen(address)
            if got.errors:
                log.warning(
                    "whatsapp message with errors",
                    extra=fields(line=owner.name, codes=list(got.errors)),
                )
            if got.changed_to is not None:
                outcomes.append(await self._changed_number(owner, address, got))
                continue
            if got.audio is not None:
                if self.voice.enabled:
                    outcomes.append(await self._voice(owner, address, got))
                    continue
                got = replace(got, notice="not_text")  # voice notes are turned off
            if got.notice is not None:
                await self._notice(owner, address, got)
                outcomes.append(0)
                continue
            if got.reply is None or (got.tapped and not await self._answers_now(owner, got)):
                outcomes.append(0)
                continue
            inbound = Inbound(
                "reply",
                CHANNEL,
                owner.name,
                address,
                self.gateway.clock(),
                text=got.reply,
                input_mode=got.input_mode,
                message_id=got.wamid,
                line=owner.name,
            )
            result = await self.gateway.receive(inbound)
            outcomes.append(0 if result.outcome == "ignored" else 1)
        return outcomes

    async def _answers_now(self, line: WhatsAppLine, got: Incoming) -> bool:
        """Whether a tapped button or list row answers the current question (a redelivery
        goes on to its stored outcome). A row of an earlier list, tapped again after it was
        answered, would otherwise be read as the next question's answer: as its text, or as
        an invalid reply that uses up an attempt."""
        address = f"whatsapp:+{got.sender}"
        key = dedupe_key(address, got.wamid)
        seen, row = await self.gateway.store.conversation(CHANNEL, address, line.name, key)
        if seen is not None:
            return True
        current = open_question(self.gateway, row)
        if got.reply not in button_codes(current):
            return False
        # The message tapped, when this process sent it: it must ask the current question (a
        # double tap on 4 stars when 1-7 is asked next offers 4 too). Unknown: taken as current.
        asked = self._asked.get(got.context) if got.context else None
        if asked is None or current is None:
            return True
        return asked == (current[1].response_id, current[1].question_id)

    async def _voice(self, line: WhatsAppLine, address: str, got: Incoming) -> int:
        """A voice note: recognised against the current question's words, then a reply."""
        assert got.audio is not None
        key = dedupe_key(address, got.wamid)
        seen, row = await self.gateway.store.conversation(CHANNEL, address, line.name, key)
        if seen is not None:  # a redelivery: the same outcome, without hearing it again
            return 0 if Result.from_json(seen).outcome == "ignored" else 1
        current = open_question(self.gateway, row)
        if current is None:
            return 0
        question, session = current
        limit = self.voice.limits.max_bytes
        try:
            audio = await self._graph.media(line.graph_base, got.audio, line.access_token, limit)
            if audio is None:
                raise Refused("too_long", "the voice note is bigger than max_bytes")
            heard = await self.voice.hear(audio, question, session.language)
        except Refused as exc:
            refusal = self.voice.refusal(exc.refusal, session.language)
            await self._tell(line, got.sender, refusal)
            return 0
        except MediaError as exc:
            if exc.retryable:
                raise  # a 5xx: Meta delivers the event again later
            log.warning("voice note not fetched", extra=fields(line=line.name, error=str(exc)))
            return 0
        inbound = Inbound(
            "reply",
            CHANNEL,
            line.name,
            address,
            self.gateway.clock(),
            text=heard.text if heard else "",  # nothing heard: an empty reply, asked again
            input_mode="speech",
            transcript=heard.text if heard else None,
            confidence=heard.confidence if heard else None,
            message_id=got.wamid,
            line=line.name,
        )
        result = await self.gateway.receive(inbound)
        return 0 if result.outcome == "ignored" else 1

    async def _notice(self, line: WhatsAppLine, address: str, got: Incoming) -> None:
        """Something that cannot be an answer: a respondent with an open survey is asked for a
        typed answer or a tap (one notice per burst), and nothing is stored."""
        assert got.notice is not None
        row = await self.gateway.store.open_session(CHANNEL, address)
        if row is not None and row.data.get("line") not in (None, line.name):
            return  # the open survey runs on another line: this chat asked nothing
        text = self.notices.text(row, got.notice)
        if text is not None and self.notices.due(address, got.wamid):
            await self._tell(line, got.sender, text)

    async def _changed_number(self, line: WhatsAppLine, address: str, got: Incoming) -> int:
        """The respondent changed their WhatsApp number (system user_changed_number): their
        open response ends (response.abandoned, reason number_changed, the answers so far
        kept) rather than waiting on a number that will not answer, and the survey starts
        again on the new number, with the same language and context and the old response's
        id as context.previous_response. A new number that has a survey open keeps it."""
        assert got.changed_to is not None
        row = await self.gateway.store.open_session(CHANNEL, address)
        if row is None or row.data.get("line") not in (None, line.name):
            return 0  # nothing open, or open on another line (which gets its own event)
        old = Session.from_json(row.data)
        if (await self.gateway.end(CHANNEL, address, "number_changed")).outcome != "accepted":
            return 0
        log.info("whatsapp respondent changed number", extra=fields(line=line.name))
        moved = f"whatsapp:+{got.changed_to}"
        if await self.gateway.store.open_session(CHANNEL, moved) is not None:
            return 1
        start = Inbound(
            "start",
            CHANNEL,
            line.name,
            moved,
            self.gateway.clock(),
            survey_id=old.survey_id,
            language=old.language,
            context={**old.context, "previous_response": old.response_id},
            line=line.name,
        )
        try:
            await self.gateway.invite(start, invitation_id=got.wamid)
        except Rejected as exc:  # the new number opted out, or the survey is gone
            log.info("survey not started again", extra=fields(line=line.name, reason=str(exc)))
        return 1

    async def _tell(self, line: WhatsAppLine, to: str, text: str) -> None:
        """A notice that is not part of the survey (nothing stored): sent now, best effort."""
        message = outgoing({"kind": "notice", "text": text}, to)[0]
        try:
            await self._graph.send(
                line.graph_base, line.phone_number_id, line.access_token, message
            )
        except DeliveryError as exc:
            log.warning("could not send a notice", extra=fields(line=line.name, error=str(exc)))

    def _line_of(self, data: Mapping[str, Any]) -> WhatsAppLine:
        """The line the respondent talks to (the event's line); else the first one configured."""
        for name in (data.get("line"), data.get("provider")):
            if isinstance(name, str) and name in self.lines:
                return self.lines[name]
        return next(iter(self.lines.values()))

    def _line_for(self, phone_number_id: str, signed_for: WhatsAppLine) -> WhatsAppLine | None:
        """The line an event is for; only lines of the app whose secret signed it qualify."""
        for line in (signed_for, *self.lines.values()):
            if line.phone_number_id == phone_number_id and line.app_secret == signed_for.app_secret:
                return line
        return None

    def _seen(self, address: str) -> None:
        now = self.gateway.clock()
        self._last_inbound[address] = now
        if len(self._last_inbound) > 100_000:  # forget windows that have closed anyway
            self._last_inbound = {a: t for a, t in self._last_inbound.items() if now - t < WINDOW}

    def _window_open(self, address: str) -> bool:
        last = self._last_inbound.get(address)
        return last is not None and self.gateway.clock() - last < WINDOW


def signed(raw: bytes, header: str | None, app_secret: str) -> bool:
    """Whether X-Hub-Signature-256 is `sha256=` + the hex HMAC-SHA256 of the raw body."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()
    return same_secret(header.removeprefix("sha256=").lower(), expected)


def _message_values(body: Any) -> Iterator[Mapping[str, Any]]:
    """The `value` of every `messages` change; ValueError when the envelope is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("entry", []), list):
        raise ValueError("no entry list")
    for entry in body.get("entry", []):
        changes = entry.get("changes", []) if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise ValueError("no changes list")
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("value", {}), dict):
                raise ValueError("malformed change")
            if change.get("field") == "messages":
                yield change.get("value", {})


def _line(name: str, entry: Mapping[str, Any]) -> WhatsAppLine:
    """A line from its config entry; a ConfigError names every mistake in it."""
    where = f"channels.{CHANNEL}.lines.{name}"
    p = Problems()
    graph_base = p.value(lambda: _graph_base(entry, where), "")
    found = p.value(lambda: _template(entry, where), None)
    line = WhatsAppLine(
        name=name,
        phone_number_id=p.value(lambda: text(entry, "phone_number_id", where), ""),
        access_token=p.value(lambda: text(entry, "access_token", where), ""),
        app_secret=p.value(lambda: text(entry, "app_secret", where), ""),
        verify_token=p.value(lambda: text(entry, "verify_token", where), ""),
        graph_base=graph_base,
        template=found,
    )
    p.check()
    return line


def _graph_base(entry: Mapping[str, Any], where: str) -> str:
    graph_base = text(entry, "graph_base", where, default=GRAPH_BASE).rstrip("/")
    if urlsplit(graph_base).scheme not in ("http", "https"):
        raise ConfigError(f"{where}.graph_base: an http(s) URL")
    return graph_base


def _template(entry: Mapping[str, Any], where: str) -> tuple[str, str | None] | None:
    """invitation_template: (name, language code; None: the survey's language)."""
    invitation = entry.get("invitation_template")
    if invitation is None:
        return None
    if not isinstance(invitation, Mapping):
        raise ConfigError(f"{where}.invitation_template: {{name, language}}")
    language = invitation.get("language")
    template_name = text(invitation, "name", f"{where}.invitation_template")
    return (template_name, str(language) if language else None)
