"""What the main process and a voice worker say to each other about a call, as JSON.

A turn is what the caller hears next (WAV files) and what answer is expected (keys, words).
An outcome is what the caller did (digits, recognised speech, or nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

OutcomeMode = Literal["dtmf", "speech", "none"]


@dataclass(frozen=True)
class Prompt:
    """One audio prompt: a WAV file (8 kHz mono PCM) and how long it plays."""

    wav: str
    seconds: float
    kind: str = "prompt"


@dataclass(frozen=True)
class Expect:
    """The answer a question takes: how many keys, which words."""

    question_id: str
    type: str
    language: str
    max_digits: int = 1  # 0: no keypad answer (text questions)
    high: int | None = None  # scales: the top value, so "1" can wait for "10" and "2" cannot
    keys: tuple[str, ...] = ()  # choices and yes/no: the valid keys
    speech: bool = False
    phrases: tuple[str, ...] | None = None  # the grammar; None: open vocabulary
    record: str | None = None  # keep the spoken answer under this name (ivr_flows.recordings)

    def complete(self, digits: str) -> bool:
        """Whether these digits cannot become a longer valid answer (take them now)."""
        if not digits or len(digits) >= self.max_digits:
            return bool(digits)
        if self.keys:
            return not any(k.startswith(digits) and len(k) > len(digits) for k in self.keys)
        if self.high is not None:
            return digits == "0" or int(digits + "0") > self.high
        return False


@dataclass(frozen=True)
class Turn:
    """What the caller hears next; no `expect` means goodbye (play, then hang up)."""

    prompts: tuple[Prompt, ...] = ()
    expect: Expect | None = None

    def to_json(self) -> dict[str, Any]:
        """The turn as the main process sends it."""
        expect = None
        if self.expect is not None:
            e = self.expect
            expect = {
                "question_id": e.question_id,
                "type": e.type,
                "language": e.language,
                "max_digits": e.max_digits,
                "high": e.high,
                "keys": list(e.keys),
                "speech": e.speech,
                "phrases": list(e.phrases) if e.phrases is not None else None,
                "record": e.record,
            }
        return {
            "prompts": [
                {"wav": p.wav, "seconds": round(p.seconds, 3), "kind": p.kind} for p in self.prompts
            ],
            "expect": expect,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Turn:
        """The turn a worker received."""
        prompts = tuple(
            Prompt(str(p["wav"]), float(p["seconds"]), str(p.get("kind", "prompt")))
            for p in data.get("prompts", [])
        )
        raw = data.get("expect")
        if not raw:
            return cls(prompts)
        phrases = raw.get("phrases")
        expect = Expect(
            question_id=str(raw["question_id"]),
            type=str(raw["type"]),
            language=str(raw["language"]),
            max_digits=int(raw.get("max_digits", 1)),
            high=int(raw["high"]) if raw.get("high") is not None else None,
            keys=tuple(str(k) for k in raw.get("keys", [])),
            speech=bool(raw.get("speech")),
            phrases=tuple(str(p) for p in phrases) if phrases is not None else None,
            record=str(raw["record"]) if raw.get("record") else None,
        )
        return cls(prompts, expect)


@dataclass(frozen=True)
class Outcome:
    """What the caller did in answer to one question."""

    mode: OutcomeMode
    text: str = ""
    confidence: float | None = None
    latency: float | None = None  # seconds from the end of speech to the recognised result
    extra: dict[str, Any] = field(default_factory=dict)
    recording: str | None = None  # the name it was recorded under (Expect.record), once written

    def to_json(self, seq: int) -> dict[str, Any]:
        """The input as the worker posts it; `seq` makes a retried post harmless."""
        out: dict[str, Any] = {"seq": seq, "mode": self.mode, "text": self.text}
        if self.confidence is not None:
            out["confidence"] = self.confidence
        if self.latency is not None:
            out["latency_ms"] = round(self.latency * 1000, 1)
        if self.recording is not None:
            out["recording"] = self.recording
        return out


def max_digits_for(high: int | None, keys: Sequence[str]) -> int:
    """How many keys an answer can take."""
    if keys:
        return max(len(k) for k in keys)
    if high is None:
        return 9
    return max(1, len(str(high)))
