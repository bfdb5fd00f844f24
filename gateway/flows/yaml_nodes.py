"""The YAML node reader for survey files: plain data from parser events, with the file position
of every value and key, and a Problem for every construct the loader refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_STR_TAG = "tag:yaml.org,2002:str"
JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One finding in a survey file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column}: {prefix}{self.message}"


@dataclass
class YamlDoc:
    """One file's data, where each value and key starts, and the problems found in it."""

    file: str
    data: Any = None
    broken: bool = False  # unreadable: no data at all
    at: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)  # where each value starts
    key_at: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    text_at: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)  # one-line text
    problems: list[Problem] = field(default_factory=list)
    claimed: set[JsonPath] = field(default_factory=set)  # reported already: no schema error

    def pos(self, path: JsonPath) -> tuple[int, int]:
        while path and path not in self.at:
            path = path[:-1]
        return self.at.get(path, (1, 1))

    def add(self, where: tuple[int, int], message: str, warn: bool = False) -> None:
        severity: Literal["error", "warning"] = "warning" if warn else "error"
        self.problems.append(Problem(self.file, *where, message, severity))

    def error(self, path: JsonPath, message: str, *, key: bool = False, warn: bool = False) -> None:
        where = self.key_at.get(path, self.pos(path)) if key else self.pos(path)
        self.add(where, message, warn)


class _Unreadable(Exception):
    """The file cannot be read as YAML at all: one problem, no data."""

    def __init__(self, where: tuple[int, int], message: str) -> None:
        super().__init__(message)
        self.where, self.message = where, message


def read_yaml(path: Path) -> YamlDoc:
    """Read one file; if it is not YAML at all, `broken` is set with the one problem why."""
    doc = YamlDoc(str(path))
    try:
        text = _text(path)
        try:
            doc.data = YamlReader(doc, text).read()
        except yaml.MarkedYAMLError as exc:
            where = _mark(exc.problem_mark or exc.context_mark)
            problem = str(exc.problem or exc.context)
            message = f"YAML syntax error: {problem}{_hint(problem, text, where)}"
            raise _Unreadable(where, message) from exc
        except yaml.reader.ReaderError as exc:
            lines = text[: exc.position].split("\n")
            char = exc.character
            code = char if isinstance(char, int) else ord(char)
            message = f"character U+{code:04X} is not allowed in YAML"
            raise _Unreadable((len(lines), len(lines[-1]) + 1), message) from exc
    except _Unreadable as exc:
        doc.broken, doc.problems = True, [Problem(doc.file, *exc.where, exc.message)]
    return doc


def _hint(problem: str, text: str, where: tuple[int, int]) -> str:
    """PyYAML's message in plain words, for the mistakes people make most."""
    lines = text.split("\n")
    line = lines[where[0] - 1] if where[0] <= len(lines) else ""
    if "'\\t'" in problem or line.lstrip(" ").startswith("\t"):
        return "; indent with spaces, not tabs"
    if problem.startswith("mapping values are not allowed"):
        if ": " in line[: where[1] - 1]:  # `en: Note: this` - a second colon inside the text
            return "; put text that contains ': ' in quotes"
        return "; this line's indentation does not match the lines above"
    if problem.startswith("expected <block end>"):
        return "; this line's indentation does not match the lines above"
    return ""


def _text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _Unreadable((1, 1), f"cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise _Unreadable((1, 1), "file is larger than 1 MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lines = raw[: exc.start].split(b"\n")
        where = (len(lines), len(lines[-1].decode("utf-8")) + 1)
        raise _Unreadable(where, f"not valid UTF-8 (byte {raw[exc.start]:#04x})") from exc


def _mark(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark else (1, 1)


def _plain(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~", ""):
        return None
    return int(text) if _INT.fullmatch(text) else text


class YamlReader:
    """Builds plain data from parser events, recording where each value and key is."""

    def __init__(self, doc: YamlDoc, text: str) -> None:
        self.doc, self.text = doc, text
        self.events: Iterator[yaml.Event] = yaml.parse(text, Loader=yaml.SafeLoader)
        self.aliases: set[str] = set()

    def read(self) -> Any:
        data, documents = None, 0
        for event in self.events:
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    self.doc.add(_mark(event.start_mark), "only one YAML document per file")
                    break
            elif isinstance(event, yaml.NodeEvent):
                data = self.node(event, (), 0, True)
        return data

    def node(self, event: yaml.Event, path: JsonPath, depth: int, keep: bool) -> Any:
        where = _mark(event.start_mark)
        if depth > MAX_DEPTH:
            raise _Unreadable(where, f"nesting deeper than {MAX_DEPTH} levels")
        if keep:
            self.doc.at[path] = where
        if isinstance(event, yaml.AliasEvent):
            if keep:
                self.doc.claimed.add(path)
            if event.anchor not in self.aliases:  # once per name: a bomb has thousands
                self.aliases.add(str(event.anchor))
                self.doc.add(where, f"alias *{event.anchor} is not allowed; write the value out")
            return None
        assert isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent)
        self.refuse_decorations(event, path if keep else None)
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event, path, keep)
        if isinstance(event, yaml.SequenceStartEvent):
            items: list[Any] = []
            while not isinstance(item := next(self.events), yaml.SequenceEndEvent):
                items.append(self.node(item, (*path, len(items)), depth + 1, keep))
            return items
        mapping: dict[str, Any] = {}
        first: dict[str, int] = {}
        while not isinstance(key_event := next(self.events), yaml.MappingEndEvent):
            key = self.key(key_event, path, depth)
            value = next(self.events)
            if key is not None and key in first:
                message = f"duplicate key '{key}' (first at line {first[key]})"
                self.doc.add(_mark(key_event.start_mark), message)
            if key is None or key in first:
                self.node(value, path, depth + 1, False)
                continue
            first[key] = _mark(key_event.start_mark)[0]
            if keep:
                self.doc.key_at[(*path, key)] = _mark(key_event.start_mark)
            mapping[key] = self.node(value, (*path, key), depth + 1, keep)
        return mapping

    def refuse_decorations(
        self, event: yaml.ScalarEvent | yaml.CollectionStartEvent, claim: JsonPath | None = None
    ) -> None:
        where = _mark(event.start_mark)
        if event.anchor is not None:
            self.doc.add(where, f"anchor &{event.anchor} is not allowed; write each value out")
        if event.tag is not None and not (
            isinstance(event, yaml.ScalarEvent) and event.tag == _STR_TAG
        ):
            tag = event.tag.replace("tag:yaml.org,2002:", "!!")
            self.doc.add(where, f"tag {tag} is not allowed; quote text instead")
            if claim is not None:
                self.doc.claimed.add(claim)

    def key(self, event: yaml.Event, path: JsonPath, depth: int) -> str | None:
        if not isinstance(event, yaml.ScalarEvent):
            self.doc.add(_mark(event.start_mark), "a key must be plain text")
            self.node(event, path, depth + 1, False)
            return None
        self.refuse_decorations(event)
        if event.style is None and event.value == "<<":
            self.doc.add(_mark(event.start_mark), "merge keys (<<) are not allowed")
            return None
        return event.value

    def scalar(self, event: yaml.ScalarEvent, path: JsonPath, keep: bool) -> object:
        if event.style is not None or event.tag is not None:
            value: object = event.value
        else:
            value = _plain(event.value)
        start: Any = event.start_mark
        end: Any = event.end_mark
        if keep and isinstance(value, str) and start.line == end.line:
            raw = self.text[start.index : end.index]
            shift = 0 if event.style is None else 1
            if raw[shift : len(raw) - shift] == value:  # columns map 1:1 onto the text
                self.doc.text_at[path] = (start.line + 1, start.column + 1 + shift)
        return value
