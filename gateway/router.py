"""The router: loads a respondent's session, runs one engine step and commits it, in order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from gateway import addresses, engine, jsoncodec, replies
from gateway.flows.model import Survey
from gateway.ids import Clock, IdFactory
from gateway.logs import fields
from gateway.model import Event, Inbound, Respondent, iso, storable
from gateway.quiet import QuietHours
from gateway.results import EXPIRED, NO_OPEN_SURVEY, Erased, Outcome, Rejected, Result, dedupe_key
from gateway.session import Session
from gateway.session_cache import SessionCache
from gateway.store import DuplicateMessage, SessionRow, StepWrite, Store
from gateway.store_schema import ERASED_PREFIX, RESPONDENT_PREFIX
from gateway.turns import Turn, Turns

log = logging.getLogger("seda.router")

RESPONDENT_CACHE = 100_000


class Gateway:
    """The core service every channel talks to."""

    def __init__(
        self,
        store: Store,
        surveys: Mapping[str, Survey],
        *,
        secret: bytes,
        clock: Clock,
        new_id: IdFactory,
        senders: frozenset[str] = frozenset(),
        quiet: QuietHours | None = None,
    ):
        self.store = store
        self.surveys = dict(surveys)
        self.clock = clock
        self.new_id = new_id
        self.senders = senders  # channels that send their own prompts (outbound.<channel> events)
        # Per channel, its check of an invitation's address (registry.Addresser), set by the
        # server once the channels are built.
        self.addressers: dict[str, Callable[[str, str | None], str]] = {}
        self.quiet = quiet
        self._secret = secret
        self._turns = Turns()
        self._respondents: dict[str, Respondent] = {}
        self._sessions = SessionCache()  # the open session of each (channel, address)
        self.answers_recorded: dict[tuple[str, str], int] = {}
        # Channels that keep files of their own about answers (call recordings) delete them
        # here when a respondent is erased or retention deletes their responses; each is given
        # the answers (at least `channel` and the file's key, `recording`) and returns how
        # many files it deleted.
        self.file_keepers: list[Callable[[Sequence[Mapping[str, Any]]], Awaitable[int]]] = []
        # Channels that hold something about an address outside the store (messages not yet
        # recorded, such as the parts of a long SMS) drop it here when a respondent is erased;
        # each is given the erased spellings (lower-case) and returns how many files it
        # deleted.
        self.erasers: list[Callable[[frozenset[str]], Awaitable[int]]] = []
        # Calling codes of national numbers (0912... -> +98912...), from the sms lines: an
        # erasure searches a number's national spelling for these.
        self.countries: set[str] = set()

    def respondent(self, address: str) -> Respondent:
        """The stable pseudonymous respondent for an address."""
        known = self._respondents.get(address)
        if known is not None:
            return known
        digest = hmac.new(self._secret, address.encode("utf-8"), hashlib.sha256).digest()
        pseudonym = base64.b32encode(digest[:15]).decode("ascii").lower()
        respondent = Respondent(id=f"{RESPONDENT_PREFIX}{pseudonym}", addresses=(address,))
        if len(self._respondents) >= RESPONDENT_CACHE:
            self._respondents.clear()  # crude but bounded; a miss only costs one HMAC
        self._respondents[address] = respondent
        return respondent

    def opt_out_ids(self, address: str) -> list[str]:
        """The pseudonyms an opt-out of this address may be kept under: the address's own
        and, last, its canonical spelling's if it is spelled otherwise (addresses.canonical),
        under which an opt-out is kept since; the own one holds older opt-outs."""
        ids = [self.respondent(address).id]
        canonical = addresses.canonical(address, self.countries)
        if canonical is not None and canonical != address:
            ids.append(self.respondent(canonical).id)
        return ids

    def invitation_address(self, channel: str, address: str, line: str | None) -> str:
        """An invitation's address as `channel` writes it; Rejected (422) if it cannot reach it."""
        check = self.addressers.get(channel)
        if check is None:
            return address
        try:
            return check(address, line)
        except ValueError as exc:
            raise Rejected(f"channel {channel}: {exc}", 422) from None

    async def invite(self, inbound: Inbound, invitation_id: str | None = None) -> Result:
        """Start a survey for a respondent (an open response on the same address is superseded)."""
        inbound = storable(inbound)
        survey = self.surveys.get(inbound.survey_id or "")
        if survey is None:
            raise Rejected(f"unknown survey {inbound.survey_id!r}", 422)
        if inbound.language is not None and inbound.language not in survey.languages:
            langs = ", ".join(survey.languages)
            raise Rejected(f"survey {survey.id} has no language {inbound.language!r} ({langs})")
        unknown = self.quiet and self.quiet.unknown_zone(inbound.channel, inbound.context or {})
        if unknown:
            raise Rejected(unknown, 422)
        respondent = self.respondent(inbound.address)
        async with self._lock(inbound.channel, inbound.address):
            invitation_key = None
            request = _invitation_digest(inbound)
            if invitation_id is not None:
                invitation_key = dedupe_key(inbound.address, invitation_id)
                seen = await self.store.inbound_result(
                    inbound.channel, "invitation", invitation_key
                )
                if seen is not None:
                    if seen.get("request", request) != request:  # older rows have none
                        raise Rejected(
                            f"invitation_id {invitation_id!r} was used for another invitation"
                            " of this respondent (survey, language, context or line differ)",
                            409,
                        )
                    return Result.from_json(seen)
            if await self.store.is_suppressed(*self.opt_out_ids(inbound.address)):
                raise Rejected("the respondent has opted out of surveys", 409)
            now = self.clock()
            old = await self._open_session(inbound.channel, inbound.address)
            if old is not None:
                superseded = self._end(old, respondent, "superseded")
                await self._commit(
                    inbound.channel, inbound.address, self._write(superseded), superseded.session
                )
            started = engine.start(survey, inbound, respondent, now, self.new_id)
            assert started.session is not None
            send_at = now
            if inbound.channel in self.senders:
                # Quiet hours hold the invitation back; expiry and the reminder count from then.
                send_at = self._send_time(started.session, now)
                session = started.session.evolve(expires_at=send_at + survey.expiry)
                if survey.remind_after is not None:
                    session = session.evolve(remind_at=send_at + survey.remind_after)
                started = replace(started, session=session)
            assert started.session is not None
            result = Result(
                "accepted",
                response_id=started.session.response_id,
                outbound=started.outbound,
                send_at=iso(send_at) if send_at > now else None,
            )
            inbound_key = None
            if invitation_key is not None:
                stored = {**result.to_json(), "request": request}
                inbound_key = (inbound.channel, "invitation", invitation_key, stored)
            to = (inbound.channel, inbound.address)
            not_before = send_at if send_at > now else None
            write = self._write(started, inbound_key, to, not_before=not_before)
            await self._commit(inbound.channel, inbound.address, write, started.session)
        log.info("invitation", extra=fields(survey=survey.id, channel=inbound.channel))
        return result

    async def receive(self, inbound: Inbound) -> Result:
        """A respondent's reply: de-duplicate, step the engine, commit, then answer."""
        inbound = storable(inbound)
        async with self._lock(inbound.channel, inbound.address):
            message_id = inbound.message_id
            key = dedupe_key(inbound.address, message_id) if message_id is not None else None
            # De-duplication is optimistic: the unique key refuses a repeat at commit time, and
            # only then is the stored result read (saves a read on every new message).
            session = await self._open_session(inbound.channel, inbound.address)
            step, result = self._reply(inbound, session)
            inbound_key = None
            if key is not None:
                inbound_key = (inbound.channel, inbound.provider, key, result.to_json())
            try:
                if step is not None:
                    to = (inbound.channel, inbound.address)
                    write = self._write(step, inbound_key, to, inbound)
                    await self._commit(inbound.channel, inbound.address, write, step.session)
                elif inbound_key is not None:
                    await self.store.commit(StepWrite(inbound=inbound_key))
            except DuplicateMessage:
                assert key is not None
                seen = await self.store.inbound_result(inbound.channel, inbound.provider, key)
                if seen is None:
                    raise
                return Result.from_json(seen)
        if step is not None and step.answers:
            tally = (inbound.channel, step.answers[0].survey_id)
            self.answers_recorded[tally] = self.answers_recorded.get(tally, 0) + len(step.answers)
        return result

    async def end(self, channel: str, address: str, reason: str) -> Result:
        """The conversation ended outside the survey (hang-up): abandon the open response."""
        async with self._lock(channel, address):
            session = await self._open_session(channel, address)
            if session is None:
                return Result("ignored", "no open survey")
            step = self._end(session, self.respondent(address), reason)
            await self._commit(channel, address, self._write(step), step.session)
            return Result("accepted", reason, response_id=session.response_id)

    async def erase(self, address: str) -> Erased:
        """Forget everything Seda holds about the respondent of an address (the right to
        erasure), under every spelling of it (gateway.addresses): their responses on every
        channel, answers, queued and delivered events, receipts, message ids, the channels'
        files and what channels hold outside the store; then tell the backends with a
        `respondent.erased` event per pseudonym (the pseudonym and the response ids: nothing
        personal). An opt-out stays in force."""
        searched = addresses.spellings(address, self.countries)
        found = await self.store.retention.sessions_of(searched.addresses)
        async with contextlib.AsyncExitStack() as turns:
            # No step of these addresses runs meanwhile (turns taken in one order: no deadlock).
            for channel, stored in sorted({(channel, a) for _, channel, a in found}):
                await turns.enter_async_context(self._lock(channel, stored))
            held = await self.store.retention.sessions_of(searched.addresses)
            # One event per pseudonym, stored first, in a queue of its own that the erasure
            # leaves alone: a crash in between leaves data to erase again, never an erasure
            # untold. One per spelling that held responses; the address as asked when none did
            # (a backend may hold something of it all the same).
            spelled = dict.fromkeys([a for _, _, a in held] or [address])
            respondents = {a: self.respondent(a) for a in spelled}
            ids = list(dict.fromkeys(r.id for r in respondents.values()))
            events = []
            for respondent_id in ids:
                data = {
                    "respondent": {"id": respondent_id},
                    "responses": [
                        response_id
                        for response_id, _, a in held
                        if respondents[a].id == respondent_id
                    ],
                }
                event = Event(self.new_id(), "respondent.erased", None, self.clock(), data)
                events.append((f"{ERASED_PREFIX}{respondent_id}", event.to_json()))
            await self.store.commit(StepWrite(events=tuple(events)))
            everyone = [self.respondent(a).id for a in searched.addresses]
            owners = list(dict.fromkeys([*ids, *everyone]))
            forgotten = await self.store.retention.forget(searched.addresses, owners, held)
            for _, channel, stored in held:
                self._sessions.forget((channel, stored))
            for response_id, _, _ in forgotten.responses:
                self._sessions.forget_response(response_id)
        asked = self.respondent(address).id
        for spelling in (address, *spelled, *searched.addresses):
            self._respondents.pop(spelling, None)
        files = 0
        for keeper in self.file_keepers:
            files += await keeper(forgotten.answers)
        reached = frozenset({*searched.addresses, *(a.lower() for a in spelled)})
        for eraser in self.erasers:
            files += await eraser(reached)
        log.info(
            "respondent erased",
            extra=fields(
                responses=len(forgotten.responses),
                answers=len(forgotten.answers),
                events=forgotten.events,
                files=files,
                spellings=len(spelled),
            ),
        )
        return Erased(
            asked,
            len(forgotten.responses),
            len(forgotten.answers),
            forgotten.events,
            forgotten.message_ids,
            files,
            tuple(dict.fromkeys(a for _, _, a in held)),
            searched.note,
        )

    async def remind_due(self, limit: int = 100) -> int:
        """Send the reminders that are due (or move them past quiet hours); returns how many
        sessions were looked at."""
        rows = await self.store.reminders_due(self.clock(), limit)
        self._prime(rows)
        await asyncio.gather(*(self._remind(r.channel, r.address, r.response_id) for r in rows))
        return len(rows)

    async def _remind(self, channel: str, address: str, response_id: str) -> None:
        async with self._lock(channel, address):
            session = await self._open_session(channel, address)
            now = self.clock()
            if session is None or session.response_id != response_id:
                return  # answered, ended or replaced since the query
            if session.remind_at is None or session.remind_at > now:
                return
            survey = self.surveys.get(session.survey_id)
            usable = survey is not None and survey.version == session.survey_version
            expired = session.expires_at is not None and session.expires_at <= now
            if not usable or expired or session.reminded or channel not in self.senders:
                # Nothing to remind of (the expiry sweep closes expired ones): clear it.
                cleared = session.evolve(remind_at=None)
                await self._commit(channel, address, self._write(engine.Step(cleared)), cleared)
                return
            assert survey is not None
            send_at = self._send_time(session, now)
            if send_at > now:
                later = session.evolve(remind_at=send_at)
                await self._commit(channel, address, self._write(engine.Step(later)), later)
                return
            step = engine.remind(survey, session, now)
            await self._commit(
                channel, address, self._write(step, to=(channel, address)), step.session
            )
        log.info("reminder", extra=fields(survey=session.survey_id, channel=channel))

    def _send_time(self, session: Session, now: datetime) -> datetime:
        """When a message Seda starts (invitation, reminder) may reach this respondent."""
        if self.quiet is None or session.channel not in self.quiet.channels:
            return now
        zone = self.quiet.zone_for(session.address, session.context)
        return self.quiet.allowed_from(now, zone)

    async def quiet_until(self, data: Mapping[str, Any]) -> datetime | None:
        """When an `outbound.<channel>` event that Seda started (invitation, reminder) may go,
        if the respondent's quiet hours have begun since it was queued; None: it may go now."""
        if self.quiet is None or not data.get("unprompted"):
            return None
        if data.get("channel") not in self.quiet.channels or data.get("response_id") is None:
            return None
        session = self.cached_open_response(str(data["response_id"]))
        if session is not None:
            context = session.context
        else:
            row = await self.store.session(str(data["response_id"]))
            context = dict(row.data.get("context") or {}) if row is not None else {}
        now = self.clock()
        zone = self.quiet.zone_for(str(data.get("address", "")), context)
        later = self.quiet.allowed_from(now, zone)
        return later if later > now else None

    async def expire_due(self, limit: int = 100) -> int:
        """Abandon open responses whose expiry has passed; returns how many."""
        rows = await self.store.expired_sessions(self.clock(), limit)
        self._prime(rows)
        # Together, so that the store writer commits them in a few group commits.
        ended = await asyncio.gather(*(self._expire(row) for row in rows))
        return sum(ended)

    def _prime(self, rows: Sequence[SessionRow]) -> None:
        """Cache the open sessions a sweep's query read: no second read for each. A session
        the cache knows is as new as the query's or newer (every step updates the cache after
        its commit)."""
        for row in rows:
            key = (row.channel, row.address)
            if key not in self._sessions:
                self._sessions.remember(key, Session.from_json(row.data))

    async def _expire(self, row: SessionRow) -> bool:
        async with self._lock(row.channel, row.address):
            session = await self._open_session(row.channel, row.address)
            if session is None or session.response_id != row.response_id:
                return False  # answered, ended or replaced since the query
            if session.expires_at is None or session.expires_at > self.clock():
                return False
            step = self._end(session, self.respondent(row.address), "expired")
            await self._commit(row.channel, row.address, self._write(step), step.session)
            return True

    def _reply(
        self, inbound: Inbound, session: Session | None
    ) -> tuple[engine.Step | None, Result]:
        now = self.clock()
        respondent = self.respondent(inbound.address)
        control = replies.control_word(inbound.text, inbound.channel)
        # Someone with an open survey has not opted out (opting out closes it, and invitations
        # to who opted out are refused): their "12" or START is a reply to the question.
        if control == "opt_in" and session is None:
            step = engine.opt_in(inbound, respondent, now, self.new_id)
            return step, Result("accepted", "opted in", outbound=step.outbound)
        if control == "opt_out":
            survey = self.surveys.get(session.survey_id) if session else None
            step = engine.opt_out(survey, session, inbound, respondent, now, self.new_id)
            return step, Result("accepted", "opted out", outbound=step.outbound)
        if session is None:
            return None, Result("ignored", NO_OPEN_SURVEY)
        if session.expires_at is not None and session.expires_at <= now:
            step = self._end(session, respondent, "expired")
            return step, Result("ignored", EXPIRED, session.response_id)
        survey = self.surveys.get(session.survey_id)
        if survey is None or survey.version != session.survey_version:
            step = self._end(session, respondent, "survey_changed")
            return step, Result("ignored", "the survey was changed", session.response_id)
        step = engine.step(survey, session, inbound, respondent, now, self.new_id)
        moved = step.session
        if (
            moved is not None
            and moved.status == "open"
            and survey.remind_after is not None
            and not moved.reminded
            and inbound.channel in self.senders
        ):
            step = replace(step, session=moved.evolve(remind_at=now + survey.remind_after))
        outcome: Outcome = "accepted" if step.accepted else "rejected"
        done = step.session is not None and step.session.status == "completed"
        result = Result(
            outcome,
            step.reason,
            session.response_id,
            step.outbound,
            completed=done,
            answers=len(step.answers),
        )
        return step, result

    def _end(self, session: Session, respondent: Respondent, reason: str) -> engine.Step:
        survey = self.surveys.get(session.survey_id)
        if survey is None:
            closed = session.evolve(status="abandoned", updated_at=self.clock(), expires_at=None)
            return engine.Step(session=closed)
        return engine.abandon(survey, session, respondent, self.clock(), self.new_id, reason)

    async def _open_session(self, channel: str, address: str) -> Session | None:
        key = (channel, address)
        if key in self._sessions:
            return self._sessions.get(key)
        row = await self.store.open_session(channel, address)
        session = Session.from_json(row.data) if row is not None else None
        self._sessions.remember(key, session)
        return session

    async def _commit(
        self, channel: str, address: str, write: StepWrite, after: Session | None
    ) -> None:
        """Commit a step's write and keep the session cache in step with what is stored."""
        key = (channel, address)
        try:
            await self.store.commit(write)
        except BaseException:
            self._sessions.forget(key)  # unknown now: the next step reads the database
            raise
        if after is not None:  # a step without a session leaves the open one as it was
            self._sessions.remember(key, after if after.status == "open" else None)

    def cache_sizes(self) -> dict[str, int]:
        """Entries in the in-memory caches (for /metrics): each is bounded."""
        return {"respondents": len(self._respondents), **self._sessions.sizes()}

    async def still_asks(self, data: Mapping[str, Any]) -> bool:
        """Whether an `outbound.<channel>` event that asks a question still may: its response
        is open at that question. Such a message can wait in the outbox (quiet hours, a channel
        outage) while the respondent opts out or answers, or a new invitation replaces the
        response; sent then, it would put a dead question to them, or one whose answer would go
        to another question. Messages that ask nothing (closing, notices) always may."""
        asked = {p.get("question_id") for p in data.get("prompts", []) if p.get("kind") == "prompt"}
        response_id = data.get("response_id")
        if not asked or response_id is None:
            return True
        session = self.cached_open_response(str(response_id))
        if session is not None and session.question_id in asked:
            return True
        # The store decides otherwise: the cache is updated just after the commit that queued
        # the message, so the forwarder may see the message while the cache still lags.
        row = await self.store.session(str(response_id))
        return row is not None and row.status == "open" and row.data.get("question_id") in asked

    def cached_open_response(self, response_id: str) -> Session | None:
        """The open session with this response id if the cache knows it (no read: a channel
        whose replies name the response, as email tokens do, saves a store read); None when the
        response is closed or not cached, which the caller settles with `store.session`."""
        return self._sessions.open_response(response_id)

    def _write(
        self,
        step: engine.Step,
        inbound_key: tuple[str, str, str, dict[str, Any]] | None = None,
        to: tuple[str, str] | None = None,
        inbound: Inbound | None = None,
        not_before: datetime | None = None,
    ) -> StepWrite:
        """What one step stores, in one transaction; `to` (channel, address) gets the prompts."""
        row = None
        if step.session is not None:
            s = step.session
            row = SessionRow(
                response_id=s.response_id,
                channel=s.channel,
                address=s.address,
                survey_id=s.survey_id,
                status=s.status,
                data=s.to_row(),
                expires_at=s.expires_at,
                remind_at=s.remind_at,
            )
        respondent_id = step.session.respondent_id if step.session else None
        for event in step.events:
            if event.type in ("respondent.opted_out", "respondent.opted_in"):
                respondent_id = event.data["respondent"]["id"]
        events = [
            (event.response_id or _respondent_key(event.data), event.to_json())
            for event in step.events
        ]
        inline = inbound is not None and inbound.answered_inline
        if to is not None and to[0] in self.senders and step.outbound and not inline:
            prompts = self._prompts_event(step, *to, inbound, not_before)
            key = prompts.response_id or respondent_id or _respondent_key(prompts.data)
            if step.control == "opt_out" and respondent_id:
                # Not behind the response's own messages: an invitation held back by quiet
                # hours would keep the notice until morning, and it is void now anyway
                # (still_asks drops questions of a closed response).
                key = respondent_id
            events.append((key, prompts.to_json()))
        suppress: tuple[tuple[str, str], ...] = ()
        unsuppress: tuple[str, ...] = ()
        if step.control is not None and respondent_id:
            # Kept under the canonical spelling's pseudonym when the address has another one,
            # so that an invitation under any spelling finds it (opt_out_ids).
            address = step.session.address if step.session else inbound and inbound.address
            ids = self.opt_out_ids(address) if address else [respondent_id]
            if step.control == "opt_out":
                suppress = ((ids[-1], "opted_out"),)
            else:
                unsuppress = tuple(dict.fromkeys([respondent_id, *ids]))
        return StepWrite(
            session=row,
            # The answer.recorded events already carry each answer as JSON: encode it once.
            answers=tuple(e.data for e in step.events if e.type == "answer.recorded"),
            events=tuple(events),
            inbound=inbound_key,
            suppress=suppress,
            unsuppress=unsuppress,
        )

    def _prompts_event(
        self,
        step: engine.Step,
        channel: str,
        address: str,
        inbound: Inbound | None,
        not_before: datetime | None = None,
    ) -> Event:
        session = step.session
        response_id = session.response_id if session else None
        data: dict[str, Any] = {
            "channel": channel,
            "provider": session.provider if session else channel,
            "line": session.line if session and session.line else (inbound and inbound.line),
            # The provider message these prompts answer (None for an invitation).
            "in_reply_to": inbound.message_id if inbound else None,
            "address": address,
            "response_id": response_id,
            "language": step.outbound[0].language,
            "prompts": [o.to_json() for o in step.outbound],
        }
        if not_before is not None:
            data["not_before"] = iso(not_before)
        if inbound is None:
            data["unprompted"] = True  # Seda starts it (invitation, reminder): quiet hours apply
        return Event(self.new_id(), f"outbound.{channel}", response_id, self.clock(), data)

    def _lock(self, channel: str, address: str) -> Turn:
        # One step at a time per conversation, in arrival order.
        return Turn(self._turns, (channel, address))


def _invitation_digest(inbound: Inbound) -> str:
    """What makes two invitations under one invitation_id the same request."""
    context = sorted((inbound.context or {}).items())
    what = [inbound.survey_id, inbound.language, context, inbound.line]
    return hashlib.sha256(jsoncodec.dumpb(what)).hexdigest()[:32]


def _respondent_key(data: Mapping[str, Any]) -> str:
    respondent = data.get("respondent") or {}
    return str(respondent.get("id", "respondent"))
