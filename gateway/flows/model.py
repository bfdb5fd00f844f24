"""The survey model that the YAML loader builds and the engine runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

END = "end"  # the goto target that ends the survey

# Fixed scales; rating and number carry their own bounds.
SCALES: Mapping[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
# Question types whose answer is a whole number (replies read digits and number words).
NUMERIC: frozenset[str] = frozenset({"nps", "csat", "ces", "rating", "number"})


class Condition(Protocol):
    """A parsed `if:` expression of a next rule."""

    @property
    def source(self) -> str:
        """The condition's text as written in the survey."""
        ...

    def evaluate(self, env: Mapping[str, object]) -> bool:
        """True when the rule applies; env holds value, answers, context, language, channel."""
        ...


@dataclass(frozen=True)
class Choice:
    """One option of a choice question."""

    id: str  # the answer code stored as `value`
    label: Mapping[str, str]  # per language
    key: str | None = None  # DTMF key / short code
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per language


@dataclass(frozen=True)
class Rule:
    """`next:` entry: go to `goto` when `condition` holds (no condition: always)."""

    goto: str
    condition: Condition | None = None


@dataclass(frozen=True)
class Question:
    """One question of a survey."""

    id: str
    type: str
    prompt: Mapping[str, str]
    invalid: Mapping[str, str] = field(default_factory=dict)  # the invalid-reply prompt
    audio: Mapping[str, str] = field(default_factory=dict)  # recorded prompt per language
    retries: int = 2
    on_fail: str = "skip"  # after the last retry: "skip" to the next rule, or "end"
    minimum: int | None = None  # scales, rating and number
    maximum: int | None = None
    choices: tuple[Choice, ...] = ()
    next: tuple[Rule, ...] = ()
    max_length: int = 1000  # text answers


@dataclass(frozen=True)
class Survey:
    """A validated survey: every goto names a question or `end`, every language has prompts."""

    id: str
    version: int
    languages: tuple[str, ...]
    questions: tuple[Question, ...]
    expiry: timedelta = timedelta(hours=24)
    intro: Mapping[str, str] = field(default_factory=dict)
    closing: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    # One reminder after this long without a reply (channels where Seda sends the messages):
    # `reminder` (optional, per language) and then the current question again.
    remind_after: timedelta | None = None
    reminder: Mapping[str, str] = field(default_factory=dict)

    def question(self, question_id: str) -> Question:
        """The question with this id (KeyError if none)."""
        for question in self.questions:
            if question.id == question_id:
                return question
        raise KeyError(question_id)

    def after(self, question_id: str) -> Question | None:
        """The question written after this one in the file, or None at the end."""
        ids = [q.id for q in self.questions]
        index = ids.index(question_id) + 1
        return self.questions[index] if index < len(self.questions) else None
