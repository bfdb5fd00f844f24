"""`seda validate` for SMS: a survey message that needs more parts than a line sends is an
error (the line would refuse it); more than the default budget of parts, a warning.

Each message is built as the channel sends it (the same `render`, the line's footer): the
first one (intro and first question), every other question, every invalid-reply prompt (with
the choices again), the reminder (its text and the question again: the longest such message)
and the closing, in every language of the survey.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.flows.loader import Problem, validate_paths
from gateway.flows.yaml_nodes import JsonPath, YamlDoc, read_yaml
from sms.lines import IRAN_FOOTER, IRANIAN, MAX_SEGMENTS, render, with_footer
from sms.segments import encoding, segments

BUDGET = 2  # parts a message may take before `seda validate` warns, unless configured
NAMES = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


@dataclass(frozen=True)
class Limit:
    """What some lines allow: their footer, the parts before a warning, the parts they send."""

    footer: str
    budget: int
    refuse_over: int  # the line's max_segments (equal to the budget when configured)
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Message:
    """One SMS a survey sends, and where its text starts in the file."""

    what: str
    language: str
    text: str
    where: tuple[int, int]


def check_surveys(spec: Mapping[str, Any], paths: Sequence[Path]) -> list[Problem]:
    """A problem for every survey message above a configured line's part budget."""
    limits = _limits(spec)
    problems: list[Problem] = []
    for path in _files(paths):
        if any(p.severity == "error" for p in validate_paths([path])):
            continue  # reported already; its data may not have the shape read below
        doc = read_yaml(path)
        for message in _messages(doc):
            for limit in limits:
                problem = _check(doc.file, message, limit)
                if problem is not None:
                    problems.append(problem)
    return sorted(problems, key=lambda p: (p.file, p.line, p.column))


def _check(file: str, message: Message, limit: Limit) -> Problem | None:
    text = with_footer(limit.footer, message.text)
    parts = segments(text)
    if parts <= limit.budget:
        return None
    size = f"{parts} SMS parts ({NAMES[encoding(text)]}"
    size += f", {len(text)} characters{' with the footer' if limit.footer else ''})"
    names = ", ".join(limit.lines)
    severity: Literal["error", "warning"] = "warning"
    if parts > limit.refuse_over:  # never sent: the respondent would never see it
        most = f"{limit.refuse_over} part{'s' if limit.refuse_over > 1 else ''}"
        tail = f"line {names} refuses messages longer than {most} (max_segments)"
        severity = "error"
    else:  # above the default budget; sent, but dearer than it need be
        tail = f"more than {limit.budget} on line {names} (set max_segments to allow more)"
    text_of = f"{message.what} ({message.language}) needs {size}; {tail}"
    return Problem(file, *message.where, f"SMS: {text_of}", severity)


def _limits(spec: Mapping[str, Any]) -> list[Limit]:
    """Lines grouped by what they allow (lines with the same footer and limits share a row)."""
    lines = spec.get("lines")
    if not isinstance(lines, Mapping):
        return []
    channel_default = spec.get("max_segments")
    groups: dict[tuple[str, int, int], list[str]] = {}
    for name, line in lines.items():
        line = line if isinstance(line, Mapping) else {}
        iranian = line.get("provider") in IRANIAN
        footer = str(line.get("footer", IRAN_FOOTER if iranian else "") or "")
        explicit = line.get("max_segments", channel_default)
        explicit = explicit if isinstance(explicit, int) and explicit > 0 else None
        key = (footer, explicit or BUDGET, explicit or MAX_SEGMENTS)
        groups.setdefault(key, []).append(str(name))
    return [Limit(f, b, r, tuple(names)) for (f, b, r), names in groups.items()]


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    seen: set[Path] = set()
    for path in paths:
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in found:
            if file.suffix in (".yaml", ".yml") and file.is_file() and file.resolve() not in seen:
                seen.add(file.resolve())
                yield file


def _messages(doc: YamlDoc) -> Iterator[Message]:
    data = doc.data
    if not isinstance(data, dict):
        return
    questions = [q for q in data.get("questions", []) if isinstance(q, dict)]
    for language in data.get("languages", []):

        def text(path: JsonPath, lang: str = language) -> str | None:
            node: Any = data
            for part in (*path, lang):
                if isinstance(part, int):
                    node = node[part] if isinstance(node, list) and part < len(node) else None
                else:
                    node = node.get(part) if isinstance(node, dict) else None
            return node if isinstance(node, str) else None

        def at(path: JsonPath, lang: str = language) -> tuple[int, int]:
            return doc.pos((*path, lang))

        reminders: list[Message] = []
        for i, question in enumerate(questions):
            prompt = _prompt(question, text(("questions", i, "prompt")), language)
            if prompt is None:
                continue
            qid = question.get("id")
            intro = text(("intro",)) if i == 0 else None
            first = [{"text": intro}] if intro else []
            what = f"question '{qid}'"
            if intro:
                what = f"the first message (intro and question '{qid}')"
            yield Message(what, language, render([*first, prompt]), at(("questions", i, "prompt")))
            own = text(("questions", i, "invalid"))
            invalid = own if own is not None else text(("invalid",))
            if invalid:
                where = at(("questions", i, "invalid") if own is not None else ("invalid",))
                message = render([{**prompt, "text": invalid}])
                yield Message(f"the invalid-reply prompt of question '{qid}'", language, message,
                              where)  # fmt: skip
            reminder = text(("reminder", "text"))
            if reminder:  # as engine.remind sends it: the text, then the question again
                message = render([{"text": reminder}, prompt])
                what = f"the reminder (with question '{qid}')"
                reminders.append(Message(what, language, message, at(("reminder", "text"))))
        if reminders:
            yield max(reminders, key=lambda m: (segments(m.text), len(m.text)))
        closing = text(("closing",))
        if closing:
            yield Message("the closing message", language, closing, at(("closing",)))


def _prompt(question: dict[str, Any], text: str | None, language: str) -> dict[str, Any] | None:
    """The prompt as the engine hands it to the channel (its JSON form)."""
    if text is None:
        return None
    choices = []
    for choice in question.get("choices", []):
        if isinstance(choice, dict):
            labels = choice.get("label")
            label = labels.get(language, "") if isinstance(labels, dict) else ""
            choices.append({"code": choice.get("id"), "key": choice.get("key"), "label": label})
    return {"text": text, "question_type": question.get("type"), "choices": choices}
