"""One call in a voice worker: play the prompts, take keys or speech, ask the main process next.

The worker holds no survey logic: the main process answers every outcome with the next turn.
Keypad: a digit stops the prompt (barge-in); an answer ends with the end key (#), when no
longer answer can start with the digits typed (NPS "2", but "1" may become "10"), or after the
inter-digit timeout. `*` before any digit repeats the question. Speech: a recogniser per
question with the question's grammar; a recognised utterance stops the prompt too. Open
(text) answers end after `open_end_silence` of silence after words (or sooner, by Vosk's own
endpointing) and last at most `recordings_max_seconds`; what the recogniser got of them is
kept as a WAV file when the main process names one (Expect.record).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gateway.logs import fields
from ivr_flows import recordings
from ivr_flows.settings import MEDIA_RATE, IvrSettings
from ivr_flows.sipmsg import Invite
from ivr_flows.turns import Expect, Outcome, Prompt, Turn

log = logging.getLogger("seda.ivr.call")

TICK = 0.05  # how often received audio is fed to the recogniser while the caller speaks
IDLE_TICK = 0.1  # ...and looked at for speech while nobody speaks (the pre-roll covers it)
VOICED_RMS = 300.0  # s16 RMS above which a 20 ms frame counts as speech
PRE_ROLL = 15  # frames (300 ms) kept before the first voiced one, so no word loses its start
FRAME_BYTES = MEDIA_RATE // 50 * 2  # 20 ms of s16le PCM
STEP_FRAMES = 5  # audio is decoded 100 ms at a time
IN_FLIGHT = 0.1  # the listener's block (agent.FRAME_USEC): audio on its way, at most this long
Frame = tuple[float, bytes]  # arrival time (time.monotonic), 20 ms of s16le PCM
MEDIA_WAIT = 5.0
REPEAT = Outcome("none", extra={"repeat": True})


class Hangup(Exception):
    """The caller hung up."""


class Refusal(Exception):
    """The main process will not run a survey for this call; `status` is the SIP answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Control(Protocol):
    """The main process, as a worker reaches it."""

    async def start(self, call: str, invite: Invite) -> Turn:
        """A call arrived: its first turn (raises Refusal)."""
        ...

    async def input(self, call: str, seq: int, outcome: Outcome) -> Turn:
        """What the caller did: the next turn (raises Refusal when the call is unknown)."""
        ...

    async def end(self, call: str, reason: str) -> None:
        """The call ended before the survey did."""
        ...


class Recognizer(Protocol):
    """asr_models.Recognizer, as far as a call uses it."""

    def feed(self, pcm: bytes) -> Any: ...

    def partial(self) -> str: ...

    def finish(self) -> Any: ...

    def close(self) -> None: ...


class Line(Protocol):
    """The SIP side of one call (SipAgent commands, awaited)."""

    async def answer(self, code: int, reason: str = "") -> None: ...

    async def hangup(self) -> None: ...

    async def play(self, wav: str) -> bool: ...

    async def stop_playing(self) -> None: ...

    def frames(self) -> queue.SimpleQueue[Frame] | None: ...


RecognizerFactory = Callable[[Expect], Recognizer | None]


@dataclass
class Deadlines:
    """The moments that end waiting for an answer."""

    prompt_ends: float | None = None
    input_ends: float | None = None
    digits_end: float | None = None


class Conversation:
    """A survey call from its INVITE to its end."""

    def __init__(
        self,
        call: str,
        invite: Invite,
        line: Line,
        control: Control,
        settings: IvrSettings,
        recognizer: RecognizerFactory,
        on_done: Callable[[], Awaitable[None]] | None = None,
    ):
        self.call = call
        self.invite = invite
        self.line = line
        self.control = control
        self.settings = settings
        self.recognizer = recognizer
        self.inbox: collections.deque[tuple[str, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.media = asyncio.Event()
        self.ended = asyncio.Event()
        self.seq = 0
        self.shutting_down = False

    # -- events from the SIP thread (delivered on the loop) ----------------------------------

    def on_media(self) -> None:
        """Audio flows."""
        self.media.set()

    def on_dtmf(self, digit: str) -> None:
        """A keypad digit."""
        self._post("dtmf", digit)

    def on_hold(self, held: bool) -> None:
        """The caller put the call on hold, or took it off."""
        self._post("hold", "held" if held else "")

    def on_ended(self) -> None:
        """The call is over."""
        self.ended.set()
        self._post("ended", "")

    def _post(self, kind: str, value: str) -> None:
        self.inbox.append((kind, value))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _next_event(self, timeout: float) -> tuple[str, str] | None:
        """The next DTMF or end event, or None after `timeout` seconds.

        A future and a timer, not asyncio.wait_for: this runs every tick of every call, and
        wait_for makes a task and a cancellation each time (measured: most of a worker's CPU).
        """
        if not self.inbox:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.inbox.popleft() if self.inbox else None

    # -- the call ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Answer, run the survey's turns, say goodbye, hang up; report an early end."""
        try:
            turn = await self.control.start(self.call, self.invite)
        except Refusal as exc:
            log.info("call refused by the gateway", extra=fields(call=self.call, status=exc.status))
            await self.line.answer(exc.status, str(exc)[:60])
            return
        except Exception:
            log.exception("gateway unreachable: call refused", extra=fields(call=self.call))
            await self.line.answer(503, "Survey Unavailable")
            return
        await self.line.answer(200)
        reason = "hangup"
        finished = False
        try:
            async with asyncio.timeout(self.settings.max_call):
                finished = await self._survey(turn)
        except Hangup:
            reason = "shutdown" if self.shutting_down else "hangup"
        except TimeoutError:
            reason = "max_call_length"
            log.info("call too long: hanging up", extra=fields(call=self.call))
        except Refusal:
            finished = True  # the gateway no longer knows the call: nothing to end there
        except Exception:
            reason = "error"
            log.exception("call failed", extra=fields(call=self.call))
        finally:
            if not self.ended.is_set():
                await self.line.hangup()
        if not finished:
            with contextlib.suppress(Exception):
                await self.control.end(self.call, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.ended.wait()

    async def _survey(self, turn: Turn) -> bool:
        """Turns until the survey is over; True when it ended on the gateway's side."""
        waiting = asyncio.create_task(self.media.wait())
        try:
            async with asyncio.timeout(MEDIA_WAIT):
                await self._until(waiting)
        finally:
            waiting.cancel()
        while turn.expect is not None:
            outcome = await self._ask(turn.prompts, turn.expect)
            self.seq += 1
            turn = await self.control.input(self.call, self.seq, outcome)
        await self._say(turn.prompts)
        return True

    async def _until(self, task: asyncio.Task[Any]) -> None:
        """Wait for a task, raising Hangup if the call ends first."""
        ended = asyncio.create_task(self.ended.wait())
        try:
            await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if self.ended.is_set():
            raise Hangup()

    async def _say(self, prompts: tuple[Prompt, ...]) -> None:
        """Play prompts to the end (the goodbye): no input is taken."""
        for prompt in prompts:
            if await self.line.play(prompt.wav):
                sleeper = asyncio.create_task(asyncio.sleep(prompt.seconds + 0.1))
                await self._until(sleeper)

    async def _ask(self, prompts: tuple[Prompt, ...], expect: Expect) -> Outcome:
        """Play a question and take its answer; `*` plays it again."""
        while True:
            recognizer = self.recognizer(expect) if expect.speech else None
            try:
                outcome = await self._listen(prompts, expect, recognizer)
            finally:
                if recognizer is not None:
                    recognizer.close()
            if outcome is not REPEAT:
                return outcome

    async def _listen(
        self, prompts: tuple[Prompt, ...], expect: Expect, recognizer: Recognizer | None
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        frames = self.line.frames()
        _drop(frames)
        at = Deadlines()
        queued = list(prompts)
        digits = ""
        barged = False
        held = False  # on hold: nothing plays, no timer runs, nothing is recognised
        if expect.phrases is None:  # open answer: Vosk's endpointing, a maximum length
            limit = self.settings.recordings_max_seconds * MEDIA_RATE * 2
            keep = expect.record is not None and self.settings.recordings
            gate = SpeechGate(self.settings.open_end_silence, limit, keep)
        else:
            gate = SpeechGate(self.settings.end_silence)

        async def next_prompt(now: float) -> None:
            while queued and not barged:
                prompt = queued.pop(0)
                if await self.line.play(prompt.wav):
                    at.prompt_ends = now + prompt.seconds
                    return
            at.prompt_ends = None
            at.input_ends = now + self.settings.no_input

        await next_prompt(loop.time())
        while True:
            now = loop.time()
            if at.prompt_ends is not None and now >= at.prompt_ends:
                await next_prompt(now)
            arrived = _drop(frames)  # drained even when unused: the queue must not grow
            if recognizer is not None and arrived and not held:
                if gate.voiced(arrived) and at.input_ends is not None:
                    at.input_ends = max(at.input_ends, now + 1.5)  # talking: let them finish
                heard = gate.feed(recognizer, time.monotonic())
                if heard is None and gate.full:  # the longest open answer: take it as it is
                    heard = recognizer.finish()
                    if heard is None:
                        return Outcome("none")
                if heard is not None:
                    return await self._heard(heard, gate, expect)
            if at.digits_end is not None and now >= at.digits_end:
                return Outcome("dtmf", digits)
            if at.input_ends is not None and now >= at.input_ends and not digits:
                heard = recognizer.finish() if recognizer is not None else None
                if heard is not None:
                    return await self._heard(heard, gate, expect)
                return Outcome("none")
            tick = (TICK if gate.started else IDLE_TICK) if recognizer is not None else 0.5
            wait = min(
                [tick] + [d - now for d in (at.prompt_ends, at.input_ends, at.digits_end) if d]
            )
            event = await self._next_event(max(wait, 0.001))
            if event is None:
                continue
            kind, value = event
            if kind == "ended":
                raise Hangup()
            if kind == "hold":
                if not value:  # taken off hold: the question again, from its start
                    return REPEAT
                # What the caller hears on hold is the PBX's music, not an answer: the
                # question waits, and its silence counts as no attempt.
                held, digits, barged = True, "", True
                queued.clear()
                at.prompt_ends = at.input_ends = at.digits_end = None
                await self.line.stop_playing()
                continue
            if kind != "dtmf" or not self._usable(value, digits, expect):
                continue  # a key that answers nothing neither stops the prompt nor the timer
            if not barged:
                barged = True
                queued.clear()
                at.prompt_ends = None
                await self.line.stop_playing()
            at.input_ends = None
            if value == self.settings.repeat_key and not digits:
                return REPEAT
            if value == self.settings.end_key:
                return Outcome("dtmf", digits)
            digits += value
            if expect.complete(digits):
                return Outcome("dtmf", digits)
            at.digits_end = loop.time() + self.settings.digit_timeout

    def _usable(self, key: str, digits: str, expect: Expect) -> bool:
        """Whether a key does something here: repeat, end the digits, or be one."""
        if not digits and key == self.settings.repeat_key:
            return True
        if key == self.settings.end_key:
            return bool(digits)
        return key.isdigit() and expect.max_digits > 0

    async def _heard(self, heard: Any, gate: SpeechGate, expect: Expect) -> Outcome:
        await self.line.stop_playing()
        last_voice = gate.last_voice
        latency = time.monotonic() - last_voice if last_voice is not None else None
        log.info(
            "speech heard",
            extra=fields(
                call=self.call,
                confidence=heard.confidence,
                after_speech_ms=round(latency * 1000) if latency is not None else None,
            ),
        )
        recording = None
        if gate.keep and expect.record is not None:
            recording = await self._record(expect.record, gate.audio())
        return Outcome("speech", heard.text, float(heard.confidence), latency, recording=recording)

    async def _record(self, name: str, pcm: bytes) -> str | None:
        """Write the answer's audio under its name; None when it could not be kept."""
        if not pcm:
            return None
        root = Path(self.settings.recordings_dir)
        try:
            await asyncio.to_thread(recordings.write, root, name, pcm, MEDIA_RATE)
        except (OSError, ValueError) as exc:
            # The path names the response: only the kind of failure is logged.
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            log.error("recording not kept", extra=fields(call=self.call, reason=reason))
            return None
        return name


class SpeechGate:
    """Feeds the recogniser only from the first voiced frame on (silence costs no decoding)
    and ends the answer after `end_silence` of silence after words (short for closed
    questions, longer for open answers). For open answers it feeds at most `limit` bytes and,
    with `keep`, keeps what it fed.

    Audio is decoded 100 ms at a time and the silence is counted in frames (plus, after the
    newest, the audio on its way: at most one listener block), not read off a clock: when the
    loop fell behind and seconds of audio came as one block, the answer still ends where the
    caller stopped (Vosk's end of utterance, or the silence after words), and what followed in
    the block is neither decoded nor kept."""

    def __init__(self, end_silence: float, limit: int | None = None, keep: bool = False):
        self.end_silence = end_silence  # seconds of silence after words that close the answer
        self.limit = limit  # bytes of PCM an answer may last; None: no limit
        self.keep = keep
        self.fed = 0
        self.kept: list[bytes] = []
        self.pending: list[tuple[bytes, bool]] = []  # 20 ms frames to decode, and: loud?
        self.before: list[bytes] = []  # the pre-roll while nobody speaks
        self.started = False
        self.quiet = 0  # frames decoded since the last loud one
        self.last_voice: float | None = None  # when the last voiced frame arrived
        self.latest: float | None = None  # when the newest frame arrived

    def voiced(self, frames: list[Frame]) -> bool:
        """Take arriving frames; True when any of them is speech."""
        frames = _split(frames)
        loud = _loud(b"".join(data for _, data in frames))
        for (arrived, _), is_loud in zip(frames, loud, strict=False):
            self.latest = arrived
            if is_loud:
                self.last_voice = arrived
        self._take([data for _, data in frames], loud)
        return any(loud)

    def _take(self, frames: list[bytes], loud: list[bool]) -> None:
        for data, is_loud in zip(frames, loud, strict=False):
            if is_loud:
                self.started = True
            if self.started:
                if self.before:
                    self.pending += [(b, False) for b in self.before]
                    self.before = []
                self.pending.append((data, is_loud))
            else:
                self.before = [*self.before[-(PRE_ROLL - 1) :], data]

    def _silent(self, now: float | None) -> bool:
        """Whether the silence after the last loud frame has lasted `end_silence`: the frames
        decoded since, and, after the newest of them (`now` given), the audio on its way,
        taken to be as silent as they were. That part is at most one listener block: a loop
        that fell behind does not count its own delay as silence."""
        waited = 0.0
        if now is not None and self.latest is not None and self.quiet:
            waited = min(max(now - self.latest, 0.0), IN_FLIGHT)
        return self.quiet * 0.02 + waited >= self.end_silence

    @property
    def full(self) -> bool:
        """Whether the answer has reached its longest."""
        return self.limit is not None and self.fed >= self.limit

    def audio(self) -> bytes:
        """What the recogniser got, when kept."""
        return b"".join(self.kept)

    def feed(self, recognizer: Recognizer, now: float | None = None) -> Any:
        """Decode what is pending; a Heard when the answer is complete. `now` (time.monotonic)
        lets the audio still on its way count: see `_silent`."""
        frames, self.pending = self.pending, []
        for start in range(0, len(frames), STEP_FRAMES):
            if self.full:
                return None
            piece = frames[start : start + STEP_FRAMES]
            pcm = b"".join(data for data, _ in piece)
            if self.limit is not None:
                pcm = pcm[: self.limit - self.fed]
            self.fed += len(pcm)
            if self.keep:
                self.kept.append(pcm)
            for _, is_loud in piece:
                self.quiet = 0 if is_loud else self.quiet + 1
            heard = recognizer.feed(pcm)
            if heard is not None:
                return heard
            if not self._silent(now if start + STEP_FRAMES >= len(frames) else None):
                continue
            # Silence after words: close the utterance now rather than wait for Vosk's own
            # endpointing, which takes up to a second with a grammar and, on an open answer,
            # may not come at all: on digital silence (what a phone that stops sending audio
            # while the caller is quiet gives) the Korean test model's decoder sometimes never
            # ends it.
            if recognizer.partial():
                return recognizer.finish()
            # Noise, not words: wait for speech again (the rest of the block may hold it).
            self.started = False
            self.quiet = 0
            self.last_voice = None
            rest = frames[start + STEP_FRAMES :]
            self._take([data for data, _ in rest], [is_loud for _, is_loud in rest])
            return None
        return None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _drop(frames: queue.SimpleQueue[Frame] | None) -> list[Frame]:
    """Everything queued so far (only this thread takes from the queue)."""
    if frames is None:
        return []
    return [frames.get_nowait() for _ in range(frames.qsize())]


def _split(frames: list[Frame]) -> list[Frame]:
    """Blocks as 20 ms frames, each with the time it arrived (a block's last frame: its own)."""
    found: list[Frame] = []
    for arrived, data in frames:
        count = len(data) // FRAME_BYTES
        for i in range(count):
            at = arrived - (count - 1 - i) * 0.02
            found.append((at, data[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]))
    return found


def _loud(pcm: bytes) -> list[bool]:
    """Per 20 ms frame: is it louder than VOICED_RMS."""
    count = len(pcm) // FRAME_BYTES
    if count == 0:
        return []
    samples = np.frombuffer(pcm[: count * FRAME_BYTES], dtype="<i2").astype(np.float32)
    rms = np.sqrt(np.mean(np.square(samples.reshape(count, FRAME_BYTES // 2)), axis=1))
    return [bool(x) for x in rms > VOICED_RMS]
