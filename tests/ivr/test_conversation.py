"""A worker's call logic against a scripted line and gateway: keys, timeouts, hang-ups.

The SIP side is proven by the SIPp tests; these pin down the keypad and timing rules that a
real call exercises only slowly (inter-digit timeout, `#`, `*`, no input, the longest call).
"""

from __future__ import annotations

import asyncio
import queue
from dataclasses import dataclass, field

from ivr_flows.conversation import Conversation, Refusal
from ivr_flows.settings import IvrSettings
from ivr_flows.sipmsg import Invite
from ivr_flows.turns import Expect, Outcome, Prompt, Turn

NPS = Expect("nps", "nps", "en", 2, high=10)
PROMPT = (Prompt("/nowhere/q.wav", 0.05),)


@dataclass
class Line:
    """The SIP side, scripted: what was answered, played and hung up."""

    answered: list[int] = field(default_factory=list)
    played: list[str] = field(default_factory=list)
    hung_up: bool = False
    stopped: int = 0
    conversation: Conversation | None = None

    async def answer(self, code: int, reason: str = "") -> None:
        self.answered.append(code)
        if code == 200 and self.conversation is not None:
            self.conversation.on_media()

    async def hangup(self) -> None:
        self.hung_up = True
        if self.conversation is not None:
            self.conversation.on_ended()

    async def play(self, wav: str) -> bool:
        self.played.append(wav)
        return True

    async def stop_playing(self) -> None:
        self.stopped += 1

    def frames(self) -> queue.SimpleQueue[tuple[float, bytes]] | None:
        return None


@dataclass
class Gateway:
    """The main process, scripted: `questions` times the same question, then goodbye."""

    outcomes: list[Outcome] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    refuse: int = 0
    expect: Expect = NPS
    questions: int = 1

    async def start(self, call: str, invite: Invite) -> Turn:
        if self.refuse:
            raise Refusal(self.refuse, "no survey")
        return Turn(PROMPT, self.expect)

    async def input(self, call: str, seq: int, outcome: Outcome) -> Turn:
        self.outcomes.append(outcome)
        if len(self.outcomes) < self.questions:
            return Turn(PROMPT, self.expect)
        return Turn((Prompt("/nowhere/bye.wav", 0.01, "closing"),))

    async def end(self, call: str, reason: str) -> None:
        self.ended.append(reason)


def _call(**settings: float) -> tuple[Conversation, Line, Gateway]:
    line, gateway = Line(), Gateway()
    values = {"no_input": 0.3, "digit_timeout": 0.2, "max_call": 5.0, **settings}
    conversation = Conversation(
        "c1",
        Invite("sip:+98912@x", "5000", "id"),
        line,
        gateway,
        IvrSettings(**values),
        lambda expect: None,
    )
    line.conversation = conversation
    return conversation, line, gateway


async def _keys(conversation: Conversation, keys: str, gap: float = 0.0) -> None:
    await asyncio.sleep(0.02)
    for key in keys:
        conversation.on_dtmf(key)
        await asyncio.sleep(gap)


async def _done(conversation: Conversation, line: Line) -> None:
    await asyncio.wait_for(conversation.run(), 5)
    assert line.answered == [200]


async def test_one_then_the_digit_timeout_answers_one() -> None:
    conversation, line, gateway = _call()
    await asyncio.gather(_done(conversation, line), _keys(conversation, "1"))
    assert gateway.outcomes == [Outcome("dtmf", "1")]
    assert line.hung_up and line.played[-1] == "/nowhere/bye.wav"
    assert gateway.ended == []  # the survey ended on its side: nothing to abandon


async def test_one_zero_answers_ten_at_once() -> None:
    conversation, line, gateway = _call(digit_timeout=10.0)
    await asyncio.gather(_done(conversation, line), _keys(conversation, "10"))
    assert gateway.outcomes == [Outcome("dtmf", "10")]


async def test_hash_ends_the_answer_and_star_repeats_the_question() -> None:
    conversation, line, gateway = _call(digit_timeout=10.0)
    await asyncio.gather(_done(conversation, line), _keys(conversation, "*1#", gap=0.02))
    assert gateway.outcomes == [Outcome("dtmf", "1")]
    assert line.played.count("/nowhere/q.wav") == 2  # asked again after *


async def test_silence_is_no_input() -> None:
    conversation, line, gateway = _call()
    await _done(conversation, line)
    assert gateway.outcomes == [Outcome("none")]


async def test_hang_up_mid_question_abandons() -> None:
    conversation, line, gateway = _call(no_input=10.0)

    async def hang_up() -> None:
        await asyncio.sleep(0.1)
        conversation.on_ended()

    await asyncio.gather(_done(conversation, line), hang_up())
    assert gateway.outcomes == []
    assert gateway.ended == ["hangup"]


async def test_the_longest_call_is_cut() -> None:
    conversation, line, gateway = _call(no_input=10.0, max_call=0.3)
    await _done(conversation, line)
    assert line.hung_up
    assert gateway.ended == ["max_call_length"]


async def test_a_refused_call_is_answered_with_the_gateways_status() -> None:
    conversation, line, gateway = _call()
    gateway.refuse = 404
    await asyncio.wait_for(conversation.run(), 5)
    assert line.answered == [404]
    assert gateway.ended == []


async def test_hash_before_any_digit_keeps_the_prompt_and_the_no_input_timer() -> None:
    # '#' alone answers nothing: before, it stopped the prompt and dropped the no-input
    # timer, so the caller sat in silence until max_call cut the call.
    conversation, line, gateway = _call(no_input=0.3, max_call=3.0)
    await asyncio.gather(_done(conversation, line), _keys(conversation, "#"))
    assert gateway.outcomes == [Outcome("none")]
    assert gateway.ended == []
    assert line.stopped == 0


async def test_a_key_on_a_text_question_does_not_silence_the_call() -> None:
    conversation, line, gateway = _call(no_input=0.3, max_call=3.0)
    gateway.expect = Expect("why", "text", "en", 0)
    await asyncio.gather(_done(conversation, line), _keys(conversation, "5"))
    assert gateway.outcomes == [Outcome("none")]
    assert gateway.ended == []


async def test_hash_after_a_complete_answer_does_not_cut_the_next_prompt() -> None:
    # "1", "0", "#": 10 is taken at the "0"; the "#" the caller adds out of habit must not
    # barge into the next question's prompt.
    conversation, line, gateway = _call(no_input=0.3, max_call=3.0)
    gateway.questions = 2
    await asyncio.gather(_done(conversation, line), _keys(conversation, "10#"))
    assert gateway.outcomes == [Outcome("dtmf", "10"), Outcome("none")]
    assert line.stopped == 1  # the first prompt, by the "1"; the second played to its end
