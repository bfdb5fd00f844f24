"""One pjsua2 endpoint driven by one thread; asyncio talks to it only through `submit`.

DESIGN.md section 6: `threadCnt = 0`, a null audio device, one thread calling
`libHandleEvents`, and a reference to every `Call` until it is disconnected. Every pjsua2 call
happens on that one thread (commands are queued to it), so Python never touches PJSIP from two
threads at once (the GIL deadlock of pjproject #3125) and pjsua2 objects are destroyed where
they were made. Callbacks on the media thread (DTMF, audio frames) only hand data over.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pjsua2 as pj

from gateway.logs import fields
from ivr_flows import sipmsg
from ivr_flows.settings import MEDIA_RATE, allowed
from ivr_flows.tsx import respond as tsx_respond

log = logging.getLogger("seda.ivr.sip")

T = TypeVar("T")
RATE = MEDIA_RATE  # the conference bridge, the prompts and the recognisers' input
FRAME_USEC = 100_000  # the listener takes 100 ms at a time: 5x fewer Python callbacks
REFUSED = 403  # answer to REFER and to INVITE with Replaces: no transfers, ever
RETRY_AFTER = {"Shutting Down": 30, "Rate Limited": 5, "Worker Full": 30}  # seconds, on 503
POLL_BUSY_MS = 20
POLL_IDLE_MS = 100
# pjsua answers an INVITE beyond its own call slots with a stateless `486 Busy Here` before any
# callback of ours (pjsua_call.c, pjsua_call_on_incoming: alloc_call_id, then
# pjsip_endpt_respond_stateless), so no Retry-After. It gets more slots than Seda admits calls:
# the excess call reaches `_admission` and is refused `503` with Retry-After. pjsua lowers a
# larger maxCalls to the PJSUA_MAX_CALLS it was built with (pjsua_call_subsys_init), 4 in the
# pjsua2-python wheel: the headroom exists only while max_calls is below that.
SPARE_CALLS = 4


class Events(Protocol):
    """What the agent reports; called on the SIP or media thread, so it must only hand over."""

    def incoming(self, handle: int, invite: sipmsg.Invite) -> None:
        """A call was admitted (ringing); the owner answers or refuses it."""
        ...

    def media_ready(self, handle: int) -> None:
        """The call's audio is flowing."""
        ...

    def dtmf(self, handle: int, digit: str) -> None:
        """A keypad digit (RFC 4733 or SIP INFO)."""
        ...

    def hold(self, handle: int, held: bool) -> None:
        """The caller put the call on hold (a=sendonly or a=inactive), or took it off."""
        ...

    def ended(self, handle: int, status: int) -> None:
        """The call is over (either side hung up)."""
        ...


@dataclass(frozen=True)
class AgentConfig:
    """Where and how the endpoint listens, and whom it lets in."""

    host: str
    port: int
    rtp_port: int
    max_calls: int
    allow: tuple[str, ...]
    rate: float  # new calls per second per source; 0: no limit (behind Kamailio, which limits)
    public_address: str = ""
    extra_headers: tuple[str, ...] = ()


def _read_vector(vector: Any) -> bytes:
    """The bytes of a SWIG ByteVector without a Python call per byte (libstdc++ layout)."""
    address = int(vector.this)
    start = ctypes.c_void_p.from_address(address).value
    finish = ctypes.c_void_p.from_address(address + ctypes.sizeof(ctypes.c_void_p)).value
    if not start or not finish or finish < start:
        return b""
    return ctypes.string_at(start, finish - start)


def _vector_reader() -> Callable[[Any], bytes]:
    """The fast reader when it reads a known vector right, else the slow and safe one."""
    probe = pj.ByteVector()
    for byte in b"seda-probe":
        probe.push_back(byte)
    try:
        if _read_vector(probe) == b"seda-probe":
            return _read_vector
    except (ValueError, OSError):
        pass
    log.warning("reading audio frames the slow way (unexpected ByteVector layout)")
    return lambda vector: bytes(vector)


read_frame = _vector_reader()


Frame = tuple[float, bytes]  # when it arrived (time.monotonic), 20 ms of s16le PCM


class Listener(pj.AudioMediaPort):  # type: ignore[misc]
    """Receives the caller's audio (8 kHz, 20 ms frames) and queues it; nothing else."""

    def __init__(self, sink: queue.SimpleQueue[Frame]):
        super().__init__()
        self.sink = sink

    def onFrameReceived(self, frame: Any) -> None:
        """Media thread: copy the frame out and return."""
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
            self.sink.put((time.monotonic(), read_frame(frame.buf)))


class SurveyCall(pj.Call):  # type: ignore[misc]
    """One incoming call; holds its pjsua2 media objects until it is disconnected."""

    def __init__(self, agent: SipAgent, account: pj.Account, call_id: int, handle: int):
        super().__init__(account, call_id)
        self.agent = agent
        self.handle = handle
        self.admitted = False
        self.audio: Any = None
        self.listener: Listener | None = None
        self.player: Any = None
        self.frames: queue.SimpleQueue[Frame] = queue.SimpleQueue()
        self.dtmf_method: int | None = None  # RFC 4733 or SIP INFO: the first the call used
        self.held = False  # put on hold by the caller
        self._dtmf_lock = threading.Lock()  # the two arrive on different threads

    def onCallState(self, prm: Any) -> None:
        """SIP thread: report the end; media objects go before pjsua2 frees the call."""
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.player = None
            self.listener = None
            self.audio = None
            self.agent._gone(self, int(info.lastStatusCode))

    def onCallMediaState(self, prm: Any) -> None:
        """SIP thread: connect the caller's audio to the listener port (and the prompt that
        plays to the caller's audio), at the start and again after every media change.

        A re-INVITE that changes the media (hold with a=sendonly, then resume) makes pjsua
        replace the call's stream with a new conference port: what was connected to the old
        one hears and says nothing any more, so everything is connected again."""
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            held = media.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            if held != self.held:
                self.held = held
                if self.admitted:
                    self.agent.events.hold(self.handle, held)
            if media.status not in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                continue
            try:
                audio = self.getAudioMedia(index)
            except pj.Error:
                continue  # no conference port (yet): a later media change brings one
            first, self.audio = self.audio is None, audio
            if self.listener is None:
                fmt = pj.MediaFormatAudio()
                fmt.type = pj.PJMEDIA_TYPE_AUDIO
                fmt.clockRate = RATE
                fmt.channelCount = 1
                fmt.bitsPerSample = 16
                fmt.frameTimeUsec = FRAME_USEC
                self.listener = Listener(self.frames)
                self.listener.createPort(f"seda-rx-{self.handle}", fmt)
            self.audio.startTransmit(self.listener)
            if self.player is not None:
                self.player.startTransmit(self.audio)
            if first and self.admitted:
                self.agent.events.media_ready(self.handle)

    def onDtmfDigit(self, prm: Any) -> None:
        """Media or SIP thread: RFC 4733 and SIP INFO (dtmf-relay) digits."""
        self._key(int(prm.method), str(prm.digit))

    def onCallTsxState(self, prm: Any) -> None:
        """SIP thread: a SIP INFO `application/dtmf` (the key alone), which pjsua neither reads
        nor answers (its dialog then answers 500): `200` and the key, or `400` when the body
        is not one key (as Kamailio answers it)."""
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        state = event.body.tsxState
        tsx = state.tsx
        if (
            tsx.role != pj.PJSIP_ROLE_UAS
            or tsx.state != pj.PJSIP_TSX_STATE_TRYING
            or tsx.method != "INFO"
            or state.type != pj.PJSIP_EVENT_RX_MSG
        ):
            return
        rdata = state.src.rdata
        key = sipmsg.info_dtmf(rdata.wholeMsg)
        if key is None:
            return  # dtmf-relay (pjsua reads it) or another INFO: left to pjsua, as before
        if not tsx_respond(tsx, rdata, 200 if key else 400):
            return
        if key:
            self._key(pj.PJSUA_DTMF_METHOD_SIP_INFO, key)
        else:
            log.warning("info key refused", extra=fields(call=self.handle, reason="not one key"))

    def _key(self, method: int, digit: str) -> None:
        """A keypad digit by one method (RFC 4733 or SIP INFO), from the first the call used.

        Some phones and gateways send every key both ways at once: taking both would count
        each key twice (an NPS "9" then "9" again as the next question's answer)."""
        if not self.admitted:
            return
        with self._dtmf_lock:
            if self.dtmf_method is None:
                self.dtmf_method = method
        if method == self.dtmf_method:
            self.agent.events.dtmf(self.handle, digit)

    def onCallTransferRequest(self, prm: Any) -> None:
        """REFER: refused, or any caller could make the survey dial out (toll fraud)."""
        prm.statusCode = REFUSED
        log.warning("transfer refused", extra=fields(call=self.handle))

    def onCallReplaceRequest(self, prm: Any) -> None:
        """INVITE with Replaces: refused as well."""
        prm.statusCode = REFUSED
        prm.reason = "Transfers Not Allowed"
        log.warning("replace refused", extra=fields(call=self.handle))


class SurveyAccount(pj.Account):  # type: ignore[misc]
    """The one local account; every INVITE to any user part arrives here."""

    def __init__(self, agent: SipAgent):
        super().__init__()
        self.agent = agent

    def onIncomingCall(self, prm: Any) -> None:
        """SIP thread: admit or refuse at once."""
        self.agent._incoming(self, prm)


class RateLimit:
    """A token bucket per source address (burst of twice the rate)."""

    def __init__(self, rate: float):
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, source: str, now: float) -> bool:
        """True when a call from this source may start now."""
        if self.rate <= 0:
            return True
        tokens, last = self.buckets.get(source, (2 * self.rate, now))
        tokens = min(2 * self.rate, tokens + (now - last) * self.rate)
        if len(self.buckets) > 10_000:
            self.buckets.clear()
        if tokens < 1:
            self.buckets[source] = (tokens, now)
            return False
        self.buckets[source] = (tokens - 1, now)
        return True


class SipAgent:
    """The pjsua2 endpoint of one worker process, on its own thread."""

    def __init__(self, config: AgentConfig, events: Events):
        self.config = config
        self.events = events
        self.calls: dict[int, SurveyCall] = {}
        self.draining = False
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._graveyard: list[SurveyCall] = []
        self._handles = itertools.count(1)
        self._limit = RateLimit(config.rate)
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seda-sip", daemon=True)
        self._endpoint: Any = None
        self._account: SurveyAccount | None = None

    # -- from any thread ---------------------------------------------------------------------

    def start(self) -> concurrent.futures.Future[None]:
        """Start the SIP thread; the future is done once the port is bound."""
        self._thread.start()
        return self._ready

    def submit(self, command: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run `command` on the SIP thread; its result or exception comes back in the future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(command())
            except BaseException as exc:
                future.set_exception(exc)

        self._commands.put(run)
        return future

    def stop(self, timeout: float = 5.0) -> None:
        """Hang up every call, destroy the endpoint and end the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def frames(self, handle: int) -> queue.SimpleQueue[Frame] | None:
        """The queue a call's received audio lands in."""
        call = self.calls.get(handle)
        return call.frames if call is not None else None

    # -- commands (run on the SIP thread through submit) -------------------------------------

    def answer(self, handle: int, code: int, reason: str = "") -> bool:
        """Answer (200), or refuse with a final status, an admitted call."""
        call = self.calls.get(handle)
        if call is None:
            return False
        op = pj.CallOpParam(True)
        op.statusCode = code
        if reason:
            op.reason = reason
        call.answer(op)
        return True

    def hangup(self, handle: int) -> None:
        """End a call (BYE once answered)."""
        call = self.calls.get(handle)
        if call is not None:
            op = pj.CallOpParam(True)
            call.hangup(op)

    def play(self, handle: int, wav: str) -> bool:
        """Play a WAV file to the caller once, instead of whatever plays now."""
        call = self.calls.get(handle)
        if call is None or call.audio is None:
            return False
        self.stop_playing(handle)
        player = pj.AudioMediaPlayer()
        player.createPlayer(wav, pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(call.audio)
        call.player = player
        return True

    def stop_playing(self, handle: int) -> None:
        """Silence the prompt that plays (barge-in)."""
        call = self.calls.get(handle)
        if call is None or call.player is None:
            return
        player, call.player = call.player, None
        if call.audio is not None:
            player.stopTransmit(call.audio)

    def live_calls(self) -> int:
        """Calls admitted and not yet over."""
        return sum(1 for call in self.calls.values() if call.admitted)

    # -- the SIP thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._create()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        endpoint = self._endpoint
        try:
            while not self._stop.is_set():
                # Commands wait for the poll to return: short while calls are up, long when
                # idle (a worker waiting for calls then costs almost nothing).
                endpoint.libHandleEvents(POLL_BUSY_MS if self.calls else POLL_IDLE_MS)
                self._drain()
            self.draining = True
            endpoint.hangupAllCalls()
            deadline = time.monotonic() + 2.0
            while self.calls and time.monotonic() < deadline:
                endpoint.libHandleEvents(10)
                self._drain()
        finally:
            self._graveyard.clear()
            self.calls.clear()
            self._account = None
            endpoint.libDestroy()

    def _drain(self) -> None:
        self._graveyard.clear()  # calls disconnected in an earlier round: safe to free now
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _create(self) -> None:
        endpoint = pj.Endpoint()
        endpoint.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = False
        config.uaConfig.maxCalls = self.config.max_calls + SPARE_CALLS
        config.uaConfig.userAgent = "seda-ivr"
        config.logConfig.level = 1
        config.logConfig.consoleLevel = 1
        config.medConfig.clockRate = RATE
        config.medConfig.sndClockRate = RATE
        config.medConfig.noVad = True
        config.medConfig.ecTailLen = 0
        endpoint.libInit(config)
        transport = pj.TransportConfig()
        transport.port = self.config.port
        transport.boundAddress = self.config.host
        if self.config.public_address:
            transport.publicAddress = self.config.public_address
        endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        endpoint.libStart()
        endpoint.audDevManager().setNullDev()
        account_config = pj.AccountConfig()
        account_config.idUri = f"sip:survey@{self.config.host}:{self.config.port}"
        media = account_config.mediaConfig.transportConfig
        media.port = self.config.rtp_port
        media.portRange = 1000
        media.boundAddress = self.config.host
        if self.config.public_address:
            media.publicAddress = self.config.public_address
        account = SurveyAccount(self)
        account.create(account_config)
        self._endpoint, self._account = endpoint, account

    def _incoming(self, account: SurveyAccount, prm: Any) -> None:
        handle = next(self._handles)
        call = SurveyCall(self, account, prm.callId, handle)
        self.calls[handle] = call
        source = prm.rdata.srcAddress.rpartition(":")[0].strip("[]")
        code, reason = self._admission(source)
        op = pj.CallOpParam(True)
        if code:
            log.warning("call refused", extra=fields(status=code, reason=reason))
            # Not answered from inside this callback: pjsua 2.15 then frees the INVITE it
            # keeps for the call twice and the worker aborts (sip_transport.c:
            # pjsip_rx_data_free_cloned: Assertion `rdata' failed). The next poll round
            # answers it, a few milliseconds later.
            self._commands.put(lambda: self._refuse(handle, code, reason))
            return
        call.admitted = True
        invite = sipmsg.parse_invite(prm.rdata.wholeMsg, self.config.extra_headers)
        for header, why in invite.refused:  # the name and why; never the value
            log.warning("context header refused", extra=fields(header=header, reason=why))
        op.statusCode = 180
        call.answer(op)
        self.events.incoming(handle, invite)

    def _refuse(self, handle: int, code: int, reason: str) -> None:
        """Answer a call that is not admitted with its final status."""
        call = self.calls.get(handle)
        if call is None:
            return  # cancelled meanwhile
        op = pj.CallOpParam(True)
        op.statusCode = code
        op.reason = reason
        if code == 503:  # a full or rate-limited worker: when to try again
            header = pj.SipHeader()
            header.hName = "Retry-After"
            header.hValue = str(RETRY_AFTER[reason])
            op.txOption.headers.append(header)
        call.answer(op)

    def _admission(self, source: str) -> tuple[int, str]:
        if self.draining:
            return 503, "Shutting Down"
        if not allowed(source, self.config.allow):
            return 403, "Forbidden"
        if not self._limit.take(source, time.monotonic()):
            return 503, "Rate Limited"
        if self.live_calls() >= self.config.max_calls:
            return 503, "Worker Full"  # Kamailio fails over to the next worker
        return 0, ""

    def _gone(self, call: SurveyCall, status: int) -> None:
        self.calls.pop(call.handle, None)
        self._graveyard.append(call)  # freed on the next round, after this callback returns
        if call.admitted:
            self.events.ended(call.handle, status)
