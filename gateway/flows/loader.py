"""Load survey YAML into model objects, reporting every problem with its file position.

YAML is read event by event with our own plain-scalar rules (true/false, null, decimal
integers; everything else is text), so `NO`, `0123` and `+98912...` stay text; anchors,
aliases, merge keys, tags and duplicate keys are refused.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from gateway import replies
from gateway.flows import condition_types, conditions
from gateway.flows.model import END, SCALES, Choice, Question, Rule, Survey
from gateway.flows.yaml_nodes import JsonPath, YamlDoc, read_yaml
from gateway.flows.yaml_nodes import Problem as Problem

_LANGUAGE = re.compile(r"[a-z]{2,3}")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,63}")  # the schema's identifier
_EXPIRY_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_SMS_CODES = {"11": "opt-out", "12": "opt-in"}
_KINDS = {"object": "a mapping", "array": "a list", "integer": "an integer", "string": "text"}
log = logging.getLogger(__name__)


class SurveyError(Exception):
    """Survey files have errors; `.problems` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def load_survey(path: Path) -> Survey:
    """Load one survey file; raise SurveyError listing all its problems."""
    survey, problems, _ = _check_file(Path(path))
    _raise_or_log(problems)
    if survey is None:  # cannot happen: only files with errors are not built
        raise SurveyError(problems)
    return survey


def load_surveys(directory: Path) -> dict[str, Survey]:
    """Load every *.yaml / *.yml under directory, keyed by survey id; raise on any error."""
    files, problems = _collect([Path(directory)])
    surveys, found = _check_all(files)
    _raise_or_log(problems + found)
    return surveys


def validate_paths(paths: Sequence[Path]) -> list[Problem]:
    """Every problem (errors and warnings) in these files and directories; never raises."""
    files, problems = _collect([Path(p) for p in paths])
    return problems + _check_all(files)[1]


def _raise_or_log(problems: list[Problem]) -> None:
    if any(p.severity == "error" for p in problems):
        raise SurveyError(problems)
    for problem in problems:
        log.warning("%s", problem)


def _collect(paths: list[Path]) -> tuple[list[Path], list[Problem]]:
    files: dict[Path, Path] = {}
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
            files.update(
                (p.resolve(), p) for p in found if p.is_file() and p.resolve() not in files
            )
            if not found:
                problems.append(Problem(str(path), 1, 1, "no .yaml files here", "warning"))
        elif path.is_file():
            files.setdefault(path.resolve(), path)
        else:
            problems.append(Problem(str(path), 1, 1, "no such file or directory"))
    return list(files.values()), problems


def _check_all(files: list[Path]) -> tuple[dict[str, Survey], list[Problem]]:
    surveys: dict[str, Survey] = {}
    problems: list[Problem] = []
    for path in files:
        survey, found, (line, column) = _check_file(path)
        problems += found
        if survey is None:
            continue
        if survey.id in surveys:
            message = f"survey id '{survey.id}' is already used by {surveys[survey.id].source}"
            problems.append(Problem(str(path), line, column, message))
        else:
            surveys[survey.id] = survey
    return surveys, problems


def _check_file(path: Path) -> tuple[Survey | None, list[Problem], tuple[int, int]]:
    """The survey (None on any error), every problem found, and where its id is."""
    doc = read_yaml(path)
    if doc.broken:
        return None, doc.problems, (1, 1)
    if doc.data is None and not doc.problems:
        message = "the file is empty; a survey needs id, version, languages and questions"
        return None, [Problem(str(path), 1, 1, message)], (1, 1)
    found = _Checker(doc, path.parent).run()
    _check_schema(doc)
    problems = sorted(doc.problems, key=lambda p: (p.line, p.column))
    if any(p.severity == "error" for p in problems):
        return None, problems, doc.pos(("id",))
    return _build(doc.data, path, found), problems, doc.pos(("id",))


# JSON Schema


@cache
def _validator() -> Draft202012Validator:
    text = resources.files("gateway").joinpath("schemas/survey.schema.json").read_text("utf-8")
    return Draft202012Validator(json.loads(text))


def _dotted(path: Sequence[str | int]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".")


def _shown(value: object) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value) if isinstance(value, str) else str(value)


def _check_schema(doc: YamlDoc) -> None:
    errors = list(_validator().iter_errors(doc.data))
    meant = _misspelt(errors)
    for error in errors:
        path: JsonPath = tuple(error.absolute_path)
        if path in doc.claimed or "allOf" in error.schema_path:
            continue  # allOf says in schema what the checker below says in words
        if error.validator == "required" and (path, _missing(error)) in meant:
            continue  # a misspelt key: reported once below, as unknown with the right name
        if error.validator == "additionalProperties":
            schema: Any = error.schema
            known = sorted(schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(known)):
                close = _close(key, known)
                hint = (
                    f"; did you mean '{close[0]}'?" if close else f"; expected {', '.join(known)}"
                )
                doc.error((*path, key), f"unknown key '{key}'{hint}", key=True)
        elif "propertyNames" in error.schema_path:
            doc.error((*path, error.instance), _readable(error), key=True)
        else:
            where = f"{_dotted(path)}: " if path else ""
            doc.error(path, where + _readable(error))


def _misspelt(errors: list[ValidationError]) -> set[tuple[JsonPath, str]]:
    """(where, key) for each known key that an unknown key is a near-miss of."""
    meant: set[tuple[JsonPath, str]] = set()
    for error in errors:
        if error.validator != "additionalProperties":
            continue
        known = list(_dict(_dict(error.schema).get("properties")))
        for key in set(_dict(error.instance)) - set(known):
            meant.update((tuple(error.absolute_path), k) for k in _close(key, known))
    return meant


def _close(word: str, known: list[str]) -> list[str]:
    return difflib.get_close_matches(word, known, 1)


def _missing(error: ValidationError) -> str | None:
    """The key a `required` error is about."""
    missing = re.match(r"'(.+)' is a required property", error.message)
    return missing[1] if missing else None


def _readable(error: ValidationError) -> str:
    rule, instance = error.validator, error.instance
    value: Any = error.validator_value
    schema: Any = error.schema
    if rule == "type":
        wanted = [value] if isinstance(value, str) else list(value)
        if "integer" in wanted and isinstance(instance, str):
            quote = "or quote it if it is text"
            if re.fullmatch(r"-?0[0-9]+", instance):
                return f"{instance} has a leading zero; write {int(instance)}, {quote}"
            if re.fullmatch(r"\+[0-9]+", instance):
                return f"{instance} has a plus sign; write {instance[1:]}, {quote}"
        expected = " or ".join(_KINDS.get(w, w) for w in wanted)
        return f"expected {expected}, got {_shown(instance)}"
    if rule == "required":
        missing = _missing(error)
        return f"missing required key '{missing}'" if missing else error.message
    if rule == "enum":
        return f"{_shown(instance)} is not one of: {', '.join(map(str, value))}"
    if rule == "pattern" and isinstance(instance, str):
        if not instance.strip():
            return "must not be empty or only spaces"
        if re.fullmatch(r"0+[mhd]", instance):
            return f"{_shown(instance)}: must be at least 1, e.g. 30m, 24h, 7d"
        hint = ""
        if instance != instance.lower() and re.search(value, instance.lower()):
            hint = f"; write {instance.lower()!r}"
        return f"{_shown(instance)}: {schema.get('patternErrorMessage', error.message)}{hint}"
    if rule in ("minItems", "maxItems") and isinstance(instance, list):
        bound = "at least" if rule == "minItems" else "at most"
        return f"needs {bound} {value} items, has {len(instance)}"
    if rule in ("minLength", "minProperties"):
        return "must not be empty"
    if rule == "uniqueItems":
        return "has repeated items"
    return error.message


# Checks the schema cannot express; all of them run, even on a partly broken file


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_key(value: object) -> bool:
    return (_is_int(value) or isinstance(value, str)) and str(value) in tuple("0123456789")


def _choice_words(choice: dict[str, Any]) -> Iterator[tuple[JsonPath, str, str, str]]:
    """Each label and keyword of a choice: where it is, label or keyword, language, text."""
    for language, label in _dict(choice.get("label")).items():
        if isinstance(label, str):
            yield ("label", language), "label", language, label
    for language, words in _dict(choice.get("keywords")).items():
        for n, word in enumerate(_list(words)):
            if isinstance(word, str):
                yield ("keywords", language, n), "keyword", language, word


class _Checker:
    """Cross-field checks: ids, forward-only goto, conditions, languages, audio, scales."""

    def __init__(self, doc: YamlDoc, folder: Path) -> None:
        self.doc, self.folder = doc, folder
        self.data = _dict(doc.data)
        languages = self.data.get("languages")
        # Invalid languages are reported once; the per-text checks that read them would only
        # repeat that error for every prompt, so they wait until languages is right.
        valid = isinstance(languages, list) and all(
            isinstance(x, str) and _LANGUAGE.fullmatch(x) for x in languages
        )
        self.languages: list[str] | None = _list(languages) if valid else None
        self.index: dict[str, int] = {}
        self.questions: list[Any] = []
        self.found: dict[JsonPath, conditions.Expression] = {}

    def run(self) -> dict[JsonPath, conditions.Expression]:
        for name in ("intro", "closing", "invalid"):
            self.texts((name,), self.data.get(name), required=name != "invalid")
        reminder = _dict(self.data.get("reminder"))
        self.texts(("reminder", "text"), reminder.get("text"), required=True)
        after, expiry = reminder.get("after"), self.data.get("expiry", "24h")
        spans = [x for x in (after, expiry) if isinstance(x, str) and _SPAN.fullmatch(x)]
        if len(spans) == 2 and _span(spans[0]) >= _span(spans[1]):
            message = f"reminder.after ({after}) must be shorter than expiry ({expiry})"
            self.doc.error(("reminder", "after"), message)
        questions = self.questions = _list(self.data.get("questions"))
        for i, question in enumerate(questions):
            qid = _dict(question).get("id")
            if qid == END:
                self.doc.error(("questions", i, "id"), "'end' is reserved for goto")
            elif isinstance(qid, str) and qid in self.index:
                message = f"duplicate question id '{qid}' (first is question {self.index[qid] + 1})"
                self.doc.error(("questions", i, "id"), message)
            elif isinstance(qid, str):
                self.index[qid] = i
        for i, question in enumerate(questions):
            if isinstance(question, dict):
                self.question(("questions", i), i, question)
        self.unreachable()
        return self.found

    def unreachable(self) -> None:
        """Warn for questions no path leads to (as engine.next_question walks, any answer)."""
        rules = [_dict(r) for q in self.questions for r in _list(_dict(q).get("next"))]
        if any(r.get("goto") not in (*self.index, END) for r in rules):
            return  # a goto is broken (reported): which questions it meant to reach is unknown
        reached, waiting = set(), [0] if self.questions else []
        while waiting:
            i = waiting.pop()
            if i in reached or i >= len(self.questions):
                continue
            reached.add(i)
            rules = _list(_dict(self.questions[i]).get("next"))
            always = next((k for k, r in enumerate(rules) if "if" not in _dict(r)), None)
            used = rules if always is None else rules[: always + 1]
            waiting += [self.index[g] for r in used if (g := _dict(r).get("goto")) in self.index]
            if always is None:  # no rule holds, or a skipped answer: the next question in the file
                waiting.append(i + 1)
        for i, question in enumerate(self.questions):
            qid = _dict(question).get("id")
            if i not in reached and isinstance(qid, str) and self.index.get(qid) == i:
                message = f"question '{qid}' can never be asked: no rule or question leads to it"
                self.doc.error(("questions", i, "id"), message, warn=True)

    def texts(self, path: JsonPath, value: object, required: bool) -> None:
        if not isinstance(value, dict) or self.languages is None:
            return
        for language in value:
            if language not in self.languages:
                message = f"language '{language}' is not in languages: {', '.join(self.languages)}"
                self.doc.error((*path, language), message, key=True)
        missing = [x for x in self.languages if x not in value]
        if required and missing:
            self.doc.error(path, f"{_dotted(path)}: missing {', '.join(missing)}")

    def question(self, path: JsonPath, i: int, question: dict[str, Any]) -> None:
        kind = question.get("type")
        self.texts((*path, "prompt"), question.get("prompt"), required=True)
        self.texts((*path, "invalid"), question.get("invalid"), required=False)
        covered = {*_dict(question.get("invalid")), *_dict(self.data.get("invalid"))}
        if missing := [x for x in self.languages or [] if x not in covered]:
            where = f"question '{question.get('id')}'"
            hint = "add `invalid` to the question or the survey"
            self.doc.error(
                path, f"{where} has no invalid-reply prompt in {', '.join(missing)}; {hint}"
            )
        self.audio((*path, "audio"), question.get("audio"))
        self.bounds(path, kind, question)
        if "max_length" in question and kind != "text":
            self.doc.error((*path, "max_length"), "max_length is for text questions", key=True)
        self.choices(path, kind, question)
        self.rules(path, i, question.get("next"))

    def audio(self, path: JsonPath, value: object) -> None:
        self.texts(path, value, required=False)
        for language, relative in _dict(value).items():
            if not isinstance(relative, str) or not relative:
                continue
            target = self.folder / relative
            if relative.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", relative):
                message = "must be relative to the survey's folder"
            elif ".." in re.split(r"[\\/]", relative):
                message = "must not contain '..'"
            elif not Path(os.path.realpath(target)).is_relative_to(os.path.realpath(self.folder)):
                message = "leaves the survey's folder through a symlink"
            else:
                if not target.is_file():
                    self.doc.error(
                        (*path, language), f"audio file not found: {relative}", warn=True
                    )
                continue
            self.doc.error((*path, language), f"audio path {relative!r} {message}")

    def bounds(self, path: JsonPath, kind: object, question: dict[str, Any]) -> None:
        for name in ("min", "max"):
            if name in question and isinstance(kind, str) and kind in SCALES:
                scale = "-".join(map(str, SCALES[kind]))
                message = f"{kind} has a fixed scale {scale}; remove {name}"
                self.doc.error((*path, name), message, key=True)
            elif name in question and kind not in ("rating", "number"):
                self.doc.error((*path, name), f"{name} is for rating and number", key=True)
        if kind not in ("rating", "number"):
            return
        low: Any = question.get("min")
        high: Any = question.get("max")
        if kind == "rating" and (low is None or high is None):
            self.doc.error(path, f"rating question '{question.get('id')}' needs min and max")
        elif not all(_is_int(x) for x in (low, high) if x is not None):
            return  # the schema reports it
        elif low is not None and high is not None and low >= high:
            self.doc.error((*path, "max"), f"max ({high}) must be greater than min ({low})")
        elif kind == "rating" and high - low > 100:
            self.doc.error((*path, "max"), f"a rating spans at most 100 points, not {high - low}")
        elif (low is None or low <= 11) and (high is None or high >= 11):
            # 12, the opt-in code, is a reply while a survey is open; 11 always opts out.
            message = "on SMS, the reply 11 is the opt-out code"
            self.doc.error((*path, "type"), f"{message}; this range includes it", warn=True)

    def choices(self, path: JsonPath, kind: object, question: dict[str, Any]) -> None:
        if kind != "choice" and "choices" in question:
            self.doc.error((*path, "choices"), "choices are for choice questions", key=True)
        elif kind == "choice" and "choices" not in question:
            self.doc.error(path, f"choice question '{question.get('id')}' needs choices")
        seen: dict[str, dict[str, int]] = {"id": {}, "key": {}}
        for j, choice in enumerate(_list(question.get("choices")) if kind == "choice" else []):
            where: JsonPath = (*path, "choices", j)
            for name, used in seen.items():
                value = _dict(choice).get(name)
                text = str(value) if _is_int(value) or isinstance(value, str) else None
                if text in _SMS_CODES:
                    message = f"choice {name} {text} is the SMS {_SMS_CODES[text]} code in Iran"
                    self.doc.error((*where, name), f"{message}; never use 11 or 12")
                    self.doc.claimed.add((*where, name))
                elif text in used:
                    message = f"choice {name} '{text}' is already used by choice {used[text] + 1}"
                    self.doc.error((*where, name), message)
                elif text is not None:
                    used[text] = j
            self.texts((*where, "label"), _dict(choice).get("label"), required=True)
            self.texts((*where, "keywords"), _dict(choice).get("keywords"), required=False)
        if kind == "choice":
            self.choice_words(path, _list(question.get("choices")))

    def choice_words(self, path: JsonPath, choices: list[Any]) -> None:
        """Labels and keywords a respondent could not use: shared, a key, an opt-out word."""
        keys = {str(k): j for j, c in enumerate(choices) if _is_key(k := _dict(c).get("key"))}
        phrases: dict[tuple[str, str], int] = {}
        for j, choice in enumerate(map(_dict, choices)):
            if keys and "key" not in choice:
                message = f"choice '{choice.get('id')}' has no key, so it cannot be chosen on"
                hint = "the keypad (calls); give it a key like the other choices"
                self.doc.error((*path, "choices", j), f"{message} {hint}", warn=True)
            for where, what, language, text in _choice_words(choice):
                where = (*path, "choices", j, *where)
                control = replies.control_word(text, "sms")
                digits = replies.normalize_digits(replies.fold(text))
                first = phrases.setdefault((language, replies.choice_key(text)), j)
                if control is not None:
                    instead = "opted out" if control == "opt_out" else "opted in"
                    message = f"{what} '{text}' is an {control.replace('_', '-')} word"
                    self.doc.error(
                        where, f"{message}: a respondent who sends it is {instead} instead"
                    )
                elif first != j and replies.choice_key(text):
                    other = f"choice {first + 1} ('{_dict(choices[first]).get('id')}')"
                    message = f"{what} '{text}' ({language}) also picks {other}"
                    self.doc.error(where, f"{message}; a respondent cannot pick either with it")
                elif what == "keyword" and keys.get(digits, j) != j:
                    other = (
                        f"choice {keys[digits] + 1} ('{_dict(choices[keys[digits]]).get('id')}')"
                    )
                    self.doc.error(
                        where, f"keyword '{text}' is the key of {other}; the reply picks that"
                    )

    def rules(self, path: JsonPath, i: int, rules: object) -> None:
        always: int | None = None
        for k, rule in enumerate(_list(rules)):
            where: JsonPath = (*path, "next", k)
            if always is not None:
                message = f"this rule is never used: rule {always + 1} always applies"
                self.doc.error(where, message, warn=True)
            if isinstance(goto := _dict(rule).get("goto"), str):
                self.goto((*where, "goto"), i, goto)
            if isinstance(source := _dict(rule).get("if"), str):
                self.condition((*where, "if"), i, source)
            elif isinstance(rule, dict) and "if" not in rule and always is None:
                always = k

    def goto(self, path: JsonPath, i: int, goto: str) -> None:
        target = self.index.get(goto)
        if goto == END or (target is not None and target > i):
            return
        if target is None:
            valid = [x for x in self.index if _IDENTIFIER.fullmatch(x)]
            close = difflib.get_close_matches(goto, [*valid, END], 1)
            message = "names no question" + (f"; did you mean '{close[0]}'?" if close else "")
        elif target == i:
            message = "jumps to its own question; go to a later question or end"
        else:
            message = f"jumps backwards (to question {target + 1}); go forward so the survey ends"
        self.doc.error(path, f"goto '{goto}' {message}")

    def condition(self, path: JsonPath, i: int, source: str) -> None:
        exact = path in self.doc.text_at  # the text's columns map 1:1 onto the file
        line, column = self.doc.text_at[path] if exact else self.doc.pos(path)
        try:
            expression = conditions.parse(source)
        except conditions.ConditionError as exc:
            where = (line, column + exc.column - 1) if exact else (line, column)
            suffix = "" if exact else f" (column {exc.column} of the condition)"
            self.doc.add(where, f"condition: {exc.message}{suffix}")
            return
        self.found[path] = expression
        for name in sorted(n for n in expression.names if n.startswith("answers.")):
            target = self.index.get(name.removeprefix("answers."))
            if target is None or target > i:
                why = "names no question" if target is None else "is asked later"
                where = (line, column + source.find(name)) if exact else (line, column)
                self.doc.add(where, f"condition: {name} {why}; use value or earlier answers")
        answers = {
            f"answers.{q}": _answer(self.questions[k]) for q, k in self.index.items() if k < i
        }
        answers["value"] = _answer(self.questions[i])
        known = {name: answer for name, answer in answers.items() if answer is not None}
        for found in condition_types.check(expression.node, known, self.languages):
            where = (line, column + found.column - 1) if exact else (line, column)
            suffix = "" if exact else f" (column {found.column} of the condition)"
            self.doc.add(where, f"condition: {found.message}{suffix}", warn=found.warn)


def _answer(question: object) -> condition_types.Answer | None:
    """What the answer to this question can be, if its id and type are known."""
    qid, kind = _dict(question).get("id"), _dict(question).get("type")
    if not isinstance(qid, str) or not isinstance(kind, str):
        return None
    low, high = SCALES.get(kind, (_dict(question).get("min"), _dict(question).get("max")))
    ids = [_dict(c).get("id") for c in _list(_dict(question).get("choices"))]
    return condition_types.Answer(
        qid,
        kind,
        low if _is_int(low) else None,
        high if _is_int(high) else None,
        tuple(x for x in ids if isinstance(x, str)),
    )


# Building the model (only for files without errors)


def _texts(value: object) -> Mapping[str, str]:
    return MappingProxyType(_dict(value))


def _build(data: dict[str, Any], path: Path, found: dict[JsonPath, Any]) -> Survey:
    questions = []
    for i, q in enumerate(data["questions"]):
        low, high = SCALES.get(q["type"], (q.get("min"), q.get("max")))
        rules = [
            Rule(r["goto"], found.get(("questions", i, "next", k, "if")))
            for k, r in enumerate(q.get("next", []))
        ]
        invalid = {**data.get("invalid", {}), **q.get("invalid", {})}  # the question's own wins
        questions.append(
            Question(
                id=q["id"],
                type=q["type"],
                prompt=_texts(q["prompt"]),
                invalid=_texts(invalid),
                audio=_texts(q.get("audio")),
                retries=q.get("retries", 2),
                on_fail=q.get("on_fail", "skip"),
                minimum=low,
                maximum=high,
                choices=tuple(map(_choice, q.get("choices", []))),
                next=tuple(rules),
                max_length=q.get("max_length", 1000),
            )
        )
    expiry = data.get("expiry", "24h")
    reminder = _dict(data.get("reminder"))
    after = reminder.get("after")
    return Survey(
        id=data["id"],
        version=data["version"],
        languages=tuple(data["languages"]),
        questions=tuple(questions),
        expiry=_span(expiry),
        intro=_texts(data.get("intro")),
        closing=_texts(data.get("closing")),
        source=str(path),
        remind_after=_span(after) if isinstance(after, str) else None,
        reminder=_texts(reminder.get("text")),
    )


_SPAN = re.compile(r"[1-9][0-9]{0,4}[mhd]")


def _span(text: str) -> timedelta:
    """30m, 24h, 7d (the schema checked the form)."""
    return timedelta(**{_EXPIRY_UNITS[text[-1]]: int(text[:-1])})


def _choice(choice: dict[str, Any]) -> Choice:
    keywords = {lang: tuple(words) for lang, words in choice.get("keywords", {}).items()}
    key = str(choice["key"]) if "key" in choice else None
    return Choice(choice["id"], _texts(choice["label"]), key, MappingProxyType(keywords))
