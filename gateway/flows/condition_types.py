"""Conditions that can never hold because a literal does not fit the answer's type.

`value <= '6'` on an nps question is false for every answer (text never equals or orders
against a number), so the rule silently never fires; these checks catch that before the survey
runs, using the type of the question that `value` or `answers.<id>` stands for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from gateway.flows.conditions import Compare, Const, Logic, Member, Name, Node, Not
from gateway.flows.model import NUMERIC

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


@dataclass(frozen=True)
class Answer:
    """What a question's answer can be: its type, bounds (numeric) and choice ids."""

    question: str
    type: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """A comparison that never holds (error) or compares outside a scale (warning)."""

    column: int  # 1-based in the condition's source
    message: str
    warn: bool = False


def check(
    node: Node, answers: Mapping[str, Answer], languages: Sequence[str] | None
) -> list[Finding]:
    """Every comparison of a name with a literal that does not fit its type (languages: None
    when the survey's own list is invalid, so language literals are not checked)."""
    return list(_walk(node, answers, languages))


def _walk(
    node: Node, answers: Mapping[str, Answer], languages: Sequence[str] | None
) -> Iterator[Finding]:
    match node:
        case Not(operand):
            yield from _walk(operand, answers, languages)
        case Logic(_, left, right):
            yield from _walk(left, answers, languages)
            yield from _walk(right, answers, languages)
        case Compare(op, Name() as name, Const() as const):
            yield from _compare(op, name, const, answers, languages)
        case Compare(op, Const() as const, Name() as name):
            yield from _compare(_FLIP[op], name, const, answers, languages)
        case Member(_, Name() as name, options, columns):
            for option, column in zip(options, columns or [0] * len(options), strict=True):
                yield from _compare("==", name, Const(option, column), answers, languages)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _compare(
    op: str,
    name: Name,
    const: Const,
    answers: Mapping[str, Answer],
    languages: Sequence[str] | None,
) -> Iterator[Finding]:
    value, column = const.value, const.column or name.column
    if value is None:
        return  # a skipped or absent answer is null: always worth testing
    shown = _literal(value)
    if name.path == "language" and op in ("==", "!="):
        if languages is not None and value not in languages:
            hint = f"; write '{str(value).lower()}'" if str(value).lower() in languages else ""
            message = f"{shown} is not one of the survey's languages ({', '.join(languages)})"
            yield Finding(column, f"{message}{hint}")
        return
    answer = answers.get(name.path)
    if answer is None:
        return
    subject = f"{name.path} (question '{answer.question}', {answer.type}{_scale(answer)})"
    never = "so this is never true"
    if answer.type in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = (
                f"; write {value}"
                if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value)
                else ""
            )
            yield Finding(column, f"{subject} is a number, not {shown}, {never}{hint}")
        else:
            yield from _range(op, value, column, subject, answer)
    elif answer.type == "yes_no":
        if not isinstance(value, bool):
            yield Finding(
                column, f"{subject} is true or false, not {shown}, {never}; write true or false"
            )
        elif op not in ("==", "!="):
            yield Finding(column, f"{subject} is true or false and has no order; use == or !=")
    elif answer.type == "choice" and op in ("==", "!=") and value not in answer.choices:
        ids = ", ".join(answer.choices) or "none"
        yield Finding(
            column,
            f"{shown} is not a choice of question '{answer.question}', {never}; its ids are {ids}",
        )


def _scale(answer: Answer) -> str:
    if answer.type not in NUMERIC or (answer.low is None and answer.high is None):
        return ""
    return (
        f" {'' if answer.low is None else answer.low}-{'' if answer.high is None else answer.high}"
    )


def _range(op: str, value: int, column: int, subject: str, answer: Answer) -> Iterator[Finding]:
    low, high = answer.low, answer.high
    if (low is not None and value < low) or (high is not None and value > high):
        yield Finding(column, f"{subject}: {value} is out of range", warn=True)
    elif (op == ">" and value == high) or (op == "<" and value == low):
        yield Finding(column, f"{subject} is never {op} {value}", warn=True)
