"""The voice channel: post-call surveys over SIP, answered by keypad or by voice.

The main process keeps the survey logic and the store; calls are answered by voice workers
(pjsua2 allows four calls per process) that a voice pool forks after loading the speech models.
With more than one worker, Kamailio is the SIP front and dispatches calls over them. Workers
reach this process over an internal HTTP API on its own loopback listener, with a token made
at start: a call started, an answer (digits or speech), a hang-up; each answered with the next
prompts as WAV files and what answer is expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.config import ConfigError
from gateway.flows.model import Question, Survey
from gateway.launch import NotStarted
from gateway.logs import fields
from gateway.model import Inbound, Outbound
from gateway.results import Rejected, Result
from gateway.router import Gateway
from gateway.secret import same_secret
from ivr_flows import asking, kamailio, recordings, sipmsg
from ivr_flows.prompts import PromptCache, wav_seconds
from ivr_flows.settings import IvrSettings, allowed, parse, read
from ivr_flows.turns import Prompt, Turn

log = logging.getLogger("seda.ivr")

PROVIDER = "sip"
READY_TIMEOUT = 90.0  # loading a large speech model takes a while
MAX_CALL_ID = 80
MAX_BODY = 64 * 1024
SWEEP_SECONDS = 30.0
RECORDINGS_SWEEP_SECONDS = 3600.0
_SIP_STATUS = {404: 404, 409: 603, 422: 404}  # gateway refusals as SIP answers
BODY = web.RequestKey("body", dict[str, Any])  # a request's JSON body, read by the guard


@dataclass
class LiveCall:
    """A call the gateway is running a survey for."""

    call: str
    worker: int
    address: str
    survey: Survey
    language: str
    line: str
    started: float
    response_id: str = ""
    asked: dict[str, int] = field(default_factory=dict)  # question -> times asked on this call
    recording: str | None = None  # the name the open question's answer is recorded under
    question: str = ""  # the question the caller is being asked
    silent: int = 0  # times in a row that question met silence (no key, no speech at all)


class IvrChannel:
    """Post-call IVR surveys: SIP (pjsua2 workers behind Kamailio), DTMF and Vosk speech."""

    name = "ivr"
    checks_whole_block = True  # check_settings looks up every key, past every mistake

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]) -> None:
        self.gateway = gateway
        self.settings = parse(spec)
        missing = _missing_surveys(self.settings, gateway.surveys)
        if missing:
            raise ConfigError(missing[0])
        self.prompts = PromptCache(
            Path(self.settings.prompts_dir), self.settings.espeak, self.settings.voices
        )
        self.calls: dict[str, LiveCall] = {}
        self.addresses: dict[str, str] = {}  # address -> call, while the call lasts
        self.ready: dict[int, int] = {}  # worker -> pid
        self.languages: set[str] = set()  # speech languages the workers have models for
        self.speech_latency: list[float] = []  # seconds, end of speech to result (last 10000)
        self._token = ""
        self._runner: web.AppRunner | None = None
        self._pool: asyncio.subprocess.Process | None = None
        self._front: kamailio.Kamailio | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._all_ready = asyncio.Event()
        self.control_url = ""
        gateway.file_keepers.append(self.forget_recordings)

    @staticmethod
    def check_settings(spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """`seda validate` and `seda run`: every mistake of the block as the channel reads it
        at start, one line each, and each survey it names that is not there."""
        settings, problems = read(spec)
        return problems + ([] if surveys is None else _missing_surveys(settings, surveys))

    def routes(self) -> list[web.RouteDef]:
        """None on the public server: the workers' API has its own loopback listener."""
        return []

    def health(self) -> dict[str, Any]:
        """Down when the voice pool or Kamailio in front of it has exited (no call is answered
        then); degraded while workers are still starting."""
        pool, front = self._pool, self._front
        found: dict[str, Any] = {"workers": self.settings.workers, "ready": len(self.ready)}
        if pool is None or pool.returncode is not None:
            return {"status": "down", "reason": "the voice pool is not running", **found}
        if front is not None and (front.proc is None or front.proc.poll() is not None):
            return {"status": "down", "reason": "kamailio is not running", **found}
        if len(self.ready) < self.settings.workers:
            return {"status": "degraded", "reason": "workers are starting", **found}
        return {"status": "ok", **found, "calls": len(self.calls)}

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """The internal API, the voice pool and its workers, then Kamailio in front."""
        self._token = secrets.token_urlsafe(32)
        if self.settings.recordings:
            folder = Path(self.settings.recordings_dir)
            try:
                folder.mkdir(mode=recordings.FOLDER_MODE, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"channels.ivr.recordings.dir: {folder} cannot be made ({exc.strerror})"
                ) from None
        # Before the models load: a taken SIP port (say, another Kamailio) fails at once, clearly.
        kamailio.check_port(self.settings.sip_host, self.settings.sip_port)
        await self._serve_control()
        try:
            await self._start_pool()
            if self.settings.workers > 1:
                await self._start_front()
        except BaseException:
            await self.stop()
            raise
        warming = asking.warm(self.prompts, self.gateway.surveys.values())
        self._tasks.append(asyncio.create_task(warming))
        self._tasks.append(asyncio.create_task(self._sweep()))
        self._tasks.append(asyncio.create_task(self._watch_pool()))
        self._tasks.append(asyncio.create_task(self._expire_recordings()))
        log.info(
            "voice channel ready",
            extra=fields(
                sip=f"{self.settings.sip_host}:{self.settings.sip_port}",
                workers=self.settings.workers,
                speech=sorted(self.languages),
            ),
        )

    async def stop(self) -> None:
        """Kamailio first (no new calls), then the workers (they hang up), then the API."""
        if self._front is not None:
            await asyncio.to_thread(self._front.stop)
            self._front = None
        await self._stop_pool()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for live in list(self.calls.values()):
            await self._end(live, "shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_control(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_post("/ivr/v1/workers/{worker}/ready", self.worker_ready)
        app.router.add_post("/ivr/v1/calls", self.call_started)
        app.router.add_post("/ivr/v1/calls/{call}/input", self.call_input)
        app.router.add_post("/ivr/v1/calls/{call}/end", self.call_ended)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.control_host, self.settings.control_port)
        await site.start()
        port = int(self._runner.addresses[0][1])
        host = self.settings.control_host
        reach = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.control_url = f"http://{reach}:{port}"

    async def _start_pool(self) -> None:
        env = {
            **os.environ,
            "SEDA_IVR_SETTINGS": json.dumps(self.settings.to_json()),
            "SEDA_IVR_CONTROL": self.control_url,
            "SEDA_IVR_TOKEN": self._token,
            "SEDA_IVR_PARENT": str(os.getpid()),  # the pool exits if this process is gone
        }
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._pool = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr_flows.pool", env=env, stdin=asyncio.subprocess.DEVNULL
        )
        exited = asyncio.create_task(self._pool.wait())
        ready = asyncio.create_task(self._all_ready.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, ready}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready not in done:
            exited.cancel()
            code = self._pool.returncode
            reason = f"exited with status {code}" if code is not None else "is not ready in time"
            # Said by `seda run` in one line, after the pool's own words (a missing model...).
            raise NotStarted(f"the voice pool {reason} (see its log lines above)")
        exited.cancel()

    async def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None or pool.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            pool.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await pool.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                pool.kill()
            await pool.wait()

    async def _start_front(self) -> None:
        s = self.settings
        front = kamailio.Front(
            host=s.sip_host,
            port=s.sip_port,
            workers=[(s.worker_host, s.worker_port(i)) for i in range(s.workers)],
            allow=s.allow,
            rate=s.rate,
            public=s.public_address,
        )
        folder = Path(s.kamailio_dir)
        cfg = await asyncio.to_thread(kamailio.write, front, folder)
        self._front = kamailio.Kamailio(s.kamailio, cfg, front, folder / "kamailio.log")
        await self._front.start()

    async def _watch_pool(self) -> None:
        """The pool should live as long as the channel: if it dies, say so and end its calls."""
        pool = self._pool
        if pool is None:
            return
        code = await pool.wait()
        if self._pool is pool:  # not stopped by us
            log.error("the voice pool exited: no calls are answered", extra=fields(status=code))
            for live in list(self.calls.values()):
                await self._end(live, "worker_lost")

    async def _sweep(self) -> None:
        """End calls that outlived the longest call (a worker died without telling)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            cutoff = time.monotonic() - self.settings.max_call - 60
            for live in [c for c in self.calls.values() if c.started < cutoff]:
                await self._end(live, "lost")

    async def forget_recordings(self, answers: Sequence[Mapping[str, Any]]) -> int:
        """Delete the recordings of these answers (an erased respondent's, or of responses
        retention deleted); how many went."""
        names = [
            str(a["recording"]) for a in answers if a.get("channel") == "ivr" and a.get("recording")
        ]
        if not names:
            return 0
        root = Path(self.settings.recordings_dir)
        gone = await asyncio.to_thread(lambda: [recordings.delete(root, n) for n in names])
        return sum(gone)

    async def _expire_recordings(self) -> None:
        """Delete the recordings older than keep_days, at start and then every hour."""
        folder = Path(self.settings.recordings_dir)
        while True:
            today = self.gateway.clock().astimezone(UTC).date()
            try:
                files, folders = await asyncio.to_thread(
                    recordings.sweep, folder, self.settings.recordings_keep_days, today
                )
            except OSError as exc:
                log.error("old recordings not deleted", extra=fields(reason=exc.strerror))
            else:
                if files or folders:
                    log.info("old recordings deleted", extra=fields(files=files, days=folders))
            await asyncio.sleep(RECORDINGS_SWEEP_SECONDS)

    # -- the internal API --------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not allowed(request.remote or "", self.settings.control_allow):
            return _refuse(403, "not from an allowed network")
        given = request.headers.get("Authorization")
        # same_secret: bytes of a header that are not UTF-8 (kept as surrogates) do not match,
        # where str.encode() raised, a 500 before the token was even checked.
        if not self._token or not same_secret(given, f"Bearer {self._token}"):
            return _refuse(401, "wrong token")
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return _refuse(400, "the body must be JSON")
        if not isinstance(body, dict):
            return _refuse(400, "the body must be a JSON object")
        request[BODY] = body
        response: web.StreamResponse = await handler(request)
        return response

    async def worker_ready(self, request: web.Request) -> web.Response:
        """A worker took its port and loaded its models."""
        worker = int(request.match_info["worker"]) if request.match_info["worker"].isdigit() else -1
        if not 0 <= worker < self.settings.workers:
            return _refuse(404, "no such worker")
        body = request[BODY]
        if worker in self.ready:  # restarted: its calls are gone
            for live in [c for c in self.calls.values() if c.worker == worker]:
                await self._end(live, "worker_restarted")
        self.ready[worker] = int(body.get("pid", 0))
        self.languages.update(str(x) for x in body.get("languages", []))
        if len(self.ready) == self.settings.workers:
            self._all_ready.set()
        return web.json_response({"status": "ok"})

    async def call_started(self, request: web.Request) -> web.Response:
        """A call arrived at a worker: start its survey; the first prompts."""
        body = request[BODY]
        call = _text(body.get("call"), MAX_CALL_ID)
        if not call:
            return _refuse(400, "a call id is required", 500)
        headers = body.get("headers") or {}
        if not isinstance(headers, dict):
            return _refuse(400, "headers must be an object", 500)
        headers = {
            str(k).lower()[:64]: sipmsg.clean(str(v))
            for k, v in list(headers.items())[: sipmsg.MAX_HEADERS]
            if isinstance(v, str)
        }
        called = _text(body.get("called"), 64)
        survey = self._survey_for(called, headers)
        if survey is None:
            return _refuse(404, "no survey for the dialled number", 404)
        language = self._language_for(survey, headers)
        known = self.calls.get(call)  # a worker's retry: the invitation is answered again
        address = known.address if known else sipmsg.address(_text(body.get("caller"), 256))
        if address is None:
            address = f"sip:anonymous.{call.lower()}@anonymous.invalid"
        elif address in self.addresses and not known:  # one caller twice at once: apart
            address = f"{address};call={call}"
        inbound = Inbound(
            kind="start",
            channel=self.name,
            provider=PROVIDER,
            address=address,
            received_at=self.gateway.clock(),
            survey_id=survey.id,
            language=language,
            context=sipmsg.context(
                headers, self.settings.context_headers, _text(body.get("sip_call_id"), 256)
            ),
            line=called or None,
        )
        try:
            result = await self.gateway.invite(inbound, invitation_id=call)
        except Rejected as exc:
            log.info("ivr call refused", extra=fields(survey=survey.id, reason=str(exc)))
            return _refuse(exc.status, str(exc), _SIP_STATUS.get(exc.status, 480))
        worker = body.get("worker")
        live = LiveCall(
            call=call,
            worker=worker if isinstance(worker, int) else -1,
            address=address,
            survey=survey,
            language=language or survey.languages[0],
            line=called,
            started=time.monotonic(),
            response_id=result.response_id or "",
        )
        self.calls[call] = live
        self.addresses[address] = call
        log.info("ivr call started", extra=fields(call=call, survey=survey.id))
        return web.json_response(await self._turn(live, result))

    async def call_input(self, request: web.Request) -> web.Response:
        """What the caller keyed or said: the next prompts."""
        live = self.calls.get(request.match_info["call"])
        if live is None:
            return _refuse(404, "no such call", 481)
        body = request[BODY]
        mode = body.get("mode")
        seq = body.get("seq")
        if mode not in ("dtmf", "speech", "none") or not isinstance(seq, int):
            return _refuse(400, "mode (dtmf, speech, none) and seq are required", 500)
        live.silent = live.silent + 1 if mode == "none" else 0
        asked = live.survey.question(live.question) if live.question else None
        if asked is not None and live.silent > asked.retries:
            return web.json_response(await self._no_input(live))
        text = _text(body.get("text"), 1000)
        transcript: str | None = None
        confidence: float | None = None
        if mode == "speech":
            confidence = _confidence(body.get("confidence"))
            transcript = text
            latency = body.get("latency_ms")
            if isinstance(latency, int | float) and len(self.speech_latency) < 10_000:
                self.speech_latency.append(float(latency) / 1000)
            if confidence < self.settings.min_confidence:
                text = ""  # not understood well enough: the question's invalid-reply prompt
        recording = self._recording(live, mode, body.get("recording"))
        inbound = Inbound(
            kind="reply",
            channel=self.name,
            provider=PROVIDER,
            address=live.address,
            received_at=self.gateway.clock(),
            text=text,
            input_mode="speech" if mode == "speech" and text else "dtmf",
            transcript=transcript if text else None,
            confidence=confidence if text else None,
            message_id=f"{live.call}:{seq}",
            line=live.line or None,
            recording=recording if text else None,
        )
        result = await self.gateway.receive(inbound)
        if recording is not None and (not text or not result.answers):
            # Not taken as the answer (not understood, refused): the audio is not kept either.
            root = Path(self.settings.recordings_dir)
            await asyncio.to_thread(recordings.delete, root, recording)
        turn = await self._turn(live, result)
        if turn["expect"] is None:
            self._forget(live)
        return web.json_response(turn)

    async def call_ended(self, request: web.Request) -> web.Response:
        """The caller hung up (or the call was cut) before the survey ended."""
        live = self.calls.get(request.match_info["call"])
        if live is None:
            return web.json_response({"status": "ignored", "reason": "no such call"})
        reason = _text(request[BODY].get("reason"), 40) or "hangup"
        await self._end(live, reason)
        return web.json_response({"status": "accepted"})

    # -- helpers -----------------------------------------------------------------------------

    async def _no_input(self, live: LiveCall) -> dict[str, Any]:
        """Every attempt at a question met silence: the caller is gone or will not answer.
        The response is abandoned (no_input) with the answers so far, rather than each later
        question being asked into the silence and the response counted as completed; the
        closing words play, then the worker hangs up."""
        await self._end(live, "no_input")
        closing = live.survey.closing.get(live.language, "")
        out = Outbound("closing", closing, live.language)
        wav = await asking.wav(self.prompts, out, live.survey) if closing.strip() else None
        prompts = (Prompt(str(wav.resolve()), wav_seconds(wav), "closing"),) if wav else ()
        return Turn(prompts).to_json()

    def _recording(self, live: LiveCall, mode: str, name: object) -> str | None:
        """The recording a worker reports, if it is the one asked for this answer."""
        if name is None:
            return None
        if mode == "speech" and live.recording is not None and name == live.recording:
            return live.recording
        log.warning("a recording that was not asked for is ignored", extra=fields(call=live.call))
        return None

    async def _end(self, live: LiveCall, reason: str) -> None:
        self._forget(live)
        try:
            await self.gateway.end(self.name, live.address, reason)
        except Exception:
            log.exception("ending a call's response failed", extra=fields(call=live.call))
        log.info("ivr call ended", extra=fields(call=live.call, reason=reason))

    def _forget(self, live: LiveCall) -> None:
        self.calls.pop(live.call, None)
        if self.addresses.get(live.address) == live.call:
            del self.addresses[live.address]

    def _survey_for(self, called: str, headers: Mapping[str, str]) -> Survey | None:
        wanted = headers.get(self.settings.survey_header.lower(), "")
        chosen = wanted or self.settings.surveys.get(called) or self.settings.default_survey
        return self.gateway.surveys.get(chosen)

    def _language_for(self, survey: Survey, headers: Mapping[str, str]) -> str | None:
        asked = headers.get(self.settings.language_header.lower())
        for language in (asked, self.settings.language):
            if language and language in survey.languages:
                return language
        return None

    async def _turn(self, live: LiveCall, result: Result) -> dict[str, Any]:
        """The prompts of a step as WAV files, and what the open question expects."""
        outbound = list(result.outbound)
        question: Question | None = None
        for out in outbound:
            if out.question_id is not None:
                question = live.survey.question(out.question_id)
        if question is not None and outbound[-1].kind == "invalid":
            # Say what was wrong, then ask again.
            again = Outbound(
                "prompt",
                question.prompt[live.language],
                live.language,
                question_id=question.id,
                question_type=question.type,
                audio=question.audio.get(live.language),
            )
            outbound.append(again)
        prompts = []
        for out in outbound:
            wav = await asking.wav(self.prompts, out, live.survey)
            if wav is not None:
                prompts.append(Prompt(str(wav.resolve()), wav_seconds(wav), out.kind))
        if question is None or result.outcome == "ignored":
            return Turn(tuple(prompts)).to_json()
        expect = asking.expect(question, live.language, self.languages)
        live.asked[question.id] = asked = live.asked.get(question.id, 0) + 1
        if live.question != question.id:
            live.question, live.silent = question.id, 0
        live.recording = None
        if expect.type == "text" and expect.speech and self.settings.recordings:
            day = self.gateway.clock().astimezone(UTC).date()
            if live.response_id:
                live.recording = recordings.name(day, live.response_id, question.id, asked)
                expect = replace(expect, record=live.recording)
        return Turn(tuple(prompts), expect).to_json()


def _refuse(status: int, reason: str, sip_status: int = 500) -> web.Response:
    return web.json_response(
        {"status": "rejected", "reason": reason, "sip_status": sip_status}, status=status
    )


def _text(value: object, limit: int) -> str:
    return sipmsg.clean(value, limit) if isinstance(value, str) else ""


def _confidence(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return min(max(float(value), 0.0), 1.0)


def _missing_surveys(settings: IvrSettings, surveys: Collection[str]) -> list[str]:
    """A line for each survey the block names that is not there, at its key."""
    known = f"(surveys: {', '.join(sorted(surveys))})"
    named = [("default_survey", settings.default_survey)]
    named += [(f"surveys.{user}", survey) for user, survey in settings.surveys.items()]
    return [
        f"channels.ivr.{key}: no survey {survey!r} {known}"
        for key, survey in named
        if survey and survey not in surveys
    ]
