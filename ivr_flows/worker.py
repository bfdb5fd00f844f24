"""A voice worker process: one SIP endpoint, up to four calls, each a Conversation.

The pjsua2 thread reports events through `Bridge`, which hands them to the asyncio loop with
`call_soon_threadsafe`; conversations ask the main process for each next turn over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import queue
import secrets
import signal
import string
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway import logs
from gateway.logs import fields
from ivr_flows.agent import AgentConfig, Frame, SipAgent
from ivr_flows.conversation import Conversation, Recognizer, Refusal
from ivr_flows.settings import MEDIA_RATE, IvrSettings
from ivr_flows.sipmsg import Invite
from ivr_flows.turns import Expect, Outcome, Turn

log = logging.getLogger("seda.ivr.worker")

RETRIES = 3
CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=10)


class HttpControl:
    """The main process's internal API, with the pool's token."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str, worker: int):
        self.http, self.base, self.worker = http, base.rstrip("/"), worker
        self.headers = {"Authorization": f"Bearer {token}"}

    async def ready(self, port: int, languages: list[str]) -> None:
        """Tell the main process this worker takes calls."""
        body = {"pid": os.getpid(), "port": port, "languages": languages}
        await self._post(f"/ivr/v1/workers/{self.worker}/ready", body)

    async def start(self, call: str, invite: Invite) -> Turn:
        """A new call: its first turn."""
        body = {"call": call, "worker": self.worker, **invite.to_json()}
        return Turn.from_json(await self._post("/ivr/v1/calls", body))

    async def input(self, call: str, seq: int, outcome: Outcome) -> Turn:
        """The caller's answer: the next turn."""
        return Turn.from_json(await self._post(f"/ivr/v1/calls/{call}/input", outcome.to_json(seq)))

    async def end(self, call: str, reason: str) -> None:
        """The call ended early."""
        await self._post(f"/ivr/v1/calls/{call}/end", {"reason": reason})

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        delay = 0.2
        for attempt in range(RETRIES):
            try:
                async with self.http.post(
                    self.base + path, json=body, headers=self.headers, timeout=CONTROL_TIMEOUT
                ) as resp:
                    data: dict[str, Any] = await resp.json(content_type=None)
                    if resp.status == 200:
                        return data
                    if resp.status < 500:
                        raise Refusal(int(data.get("sip_status", 500)), str(data.get("reason")))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                if attempt == RETRIES - 1:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise RuntimeError("the gateway keeps failing")


class AgentLine:
    """One call's SIP side: SipAgent commands run on the SIP thread and awaited here."""

    def __init__(self, agent: SipAgent, handle: int):
        self.agent, self.handle = agent, handle

    async def _on_sip(self, command: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.agent.submit(command))

    async def answer(self, code: int, reason: str = "") -> None:
        """Answer or refuse."""
        await self._on_sip(lambda: self.agent.answer(self.handle, code, reason))

    async def hangup(self) -> None:
        """BYE."""
        await self._on_sip(lambda: self.agent.hangup(self.handle))

    async def play(self, wav: str) -> bool:
        """Start a prompt."""
        played: bool = await self._on_sip(lambda: self.agent.play(self.handle, wav))
        return played

    async def stop_playing(self) -> None:
        """Stop the prompt."""
        await self._on_sip(lambda: self.agent.stop_playing(self.handle))

    def frames(self) -> queue.SimpleQueue[Frame] | None:
        """The caller's audio."""
        return self.agent.frames(self.handle)


class Bridge:
    """Events from the SIP thread, handed to the loop; one Conversation per call."""

    def __init__(self, loop: asyncio.AbstractEventLoop, start: Callable[[int, Invite], None]):
        self.loop = loop
        self.start = start
        self.calls: dict[int, Conversation] = {}

    def incoming(self, handle: int, invite: Invite) -> None:
        """SIP thread."""
        self.loop.call_soon_threadsafe(self.start, handle, invite)

    def media_ready(self, handle: int) -> None:
        """SIP thread."""
        self.loop.call_soon_threadsafe(self._to, handle, "on_media", ())

    def dtmf(self, handle: int, digit: str) -> None:
        """Media thread."""
        self.loop.call_soon_threadsafe(self._to, handle, "on_dtmf", (digit,))

    def hold(self, handle: int, held: bool) -> None:
        """SIP thread."""
        self.loop.call_soon_threadsafe(self._to, handle, "on_hold", (held,))

    def ended(self, handle: int, status: int) -> None:
        """SIP thread."""
        self.loop.call_soon_threadsafe(self._to, handle, "on_ended", ())

    def _to(self, handle: int, method: str, args: tuple[Any, ...]) -> None:
        conversation = self.calls.get(handle)
        if conversation is not None:
            getattr(conversation, method)(*args)


def recognizers(models: Any) -> Callable[[Expect], Recognizer | None]:
    """A factory of per-question recognisers from asr_models.SpeechModels (or none)."""

    def make(expect: Expect) -> Recognizer | None:
        if models is None or expect.language not in models.languages():
            return None
        try:
            recognizer: Recognizer = models.recognizer(expect.language, expect.phrases, MEDIA_RATE)
            return recognizer
        except Exception:
            log.exception("no recogniser", extra=fields(language=expect.language))
            return None

    return make


def run(index: int, settings: IvrSettings, control_url: str, token: str, models: Any) -> int:
    """The worker process's whole life (called in the forked child)."""
    logs.setup(settings.log_level)
    try:
        asyncio.run(_serve(index, settings, control_url, token, models))
    except Exception:
        log.exception("voice worker failed", extra=fields(worker=index))
        return 1
    return 0


async def _serve(
    index: int, settings: IvrSettings, control_url: str, token: str, models: Any
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = settings.worker_port(index)
    host = settings.sip_host if settings.workers == 1 else settings.worker_host
    # Behind Kamailio every INVITE comes from the front: from its own address, or the
    # workers' when it sends over loopback.
    front = (_network(host), _network(settings.sip_host))
    allow = settings.allow if settings.workers == 1 else (*settings.allow, *front)
    tasks: set[asyncio.Task[None]] = set()
    make_recognizer = recognizers(models)
    bridge: Bridge

    def start(handle: int, invite: Invite) -> None:
        call = f"w{index}-{_nonce()}"
        conversation = Conversation(
            call, invite, AgentLine(agent, handle), control, settings, make_recognizer
        )
        bridge.calls[handle] = conversation

        async def life() -> None:
            try:
                await conversation.run()
            finally:
                bridge.calls.pop(handle, None)

        task = loop.create_task(life())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    bridge = Bridge(loop, start)
    config = AgentConfig(
        host=host,
        port=port,
        rtp_port=settings.rtp_port_base + 1000 * index,
        max_calls=settings.calls_per_worker,
        allow=allow,
        rate=settings.rate if settings.workers == 1 else 0.0,
        public_address=settings.public_address,
        extra_headers=(settings.survey_header, settings.language_header),
    )
    agent = SipAgent(config, bridge)
    await asyncio.wrap_future(agent.start())
    languages = list(models.languages()) if models is not None else []
    async with aiohttp.ClientSession() as http:
        control = HttpControl(http, control_url, token, index)
        await control.ready(port, languages)
        log.info("voice worker ready", extra=fields(worker=index, port=port, speech=languages))
        await stop.wait()
        for conversation in list(bridge.calls.values()):
            conversation.shutting_down = True
        await asyncio.wrap_future(agent.submit(lambda: _drain(agent)))
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(agent.stop)


def _drain(agent: SipAgent) -> None:
    agent.draining = True
    for handle in list(agent.calls):
        agent.hangup(handle)


def _network(host: str) -> str:
    try:
        network = ipaddress.ip_network(host)
    except ValueError:
        return "127.0.0.0/8"
    return "127.0.0.0/8" if network.num_addresses > 1 or host in ("0.0.0.0", "::") else str(network)


def _nonce() -> str:
    # Letters only: a run of digits would look like a phone number to the log redaction.
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
