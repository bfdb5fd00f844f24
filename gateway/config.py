"""Gateway configuration: YAML with ${ENV} substitution, checked against a JSON Schema."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^(\d+)([smhdw]?)\Z")
Position = tuple[int, int]  # 1-based line and column in gateway.yaml
_UNITS = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION_FORMS = "30s, 5m, 24h, 3d, 2w or a number of seconds"
KEEP_DELIVERED = "30d"  # delivered outbox rows kept for replay, unless configured otherwise
KEEP_RESPONSES = "180d"  # finished responses, receipts and message ids (retention.responses)


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why (a line each).
    `unset`: the keys whose values name an unset variable (their dotted paths)."""

    def __init__(self, message: str, unset: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.unset = unset


T = TypeVar("T")


class Problems:
    """A settings block's mistakes gathered as its parser goes on past each one, so that one
    `seda validate` names them all (not the first, then the next after the fix)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def value(self, read: Callable[[], T], instead: T) -> T:
        """What `read` gives; `instead` when it raised a ConfigError, which is kept."""
        try:
            return read()
        except ConfigError as exc:
            self.lines += str(exc).split("\n")
            return instead

    def add(self, line: str) -> None:
        """A mistake found by the parser itself."""
        self.lines.append(line)

    def check(self) -> None:
        """A ConfigError with one line for each mistake kept, if any."""
        if self.lines:
            raise ConfigError("\n".join(self.lines))


@dataclass(frozen=True)
class Config:
    """The parsed gateway configuration, with paths resolved against the working directory."""

    path: Path
    data: dict[str, Any]
    # Where each key starts in the file, by its path ("channels", "sms", "lines", ...).
    positions: dict[tuple[str, ...], Position] = field(default_factory=dict, compare=False)

    def locate(self, message: str) -> str:
        """A problem found after loading (a channel's block), as `file:line:column: key: ...`
        when the message starts with the dotted key it is about."""
        rest = message.removeprefix(f"{self.path}: ")
        backend = re.match(r"backend '([^']+)'", rest)  # the backends' own wording
        dotted = re.match(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*", rest)
        if backend is not None:
            key: tuple[str, ...] = ("backends", backend.group(1))
        elif dotted is not None and dotted.group(0).split(".")[0] in self.data:
            key = tuple(dotted.group(0).split("."))
        else:
            return message
        line, column = _position(self.positions, key)
        return f"{self.path}:{line}:{column}: {rest}"

    @property
    def host(self) -> str:
        """Address the HTTP server listens on."""
        return str(self.data.get("server", {}).get("host", "127.0.0.1"))

    @property
    def port(self) -> int:
        """Port the HTTP server listens on."""
        return int(self.data.get("server", {}).get("port", 8080))

    @property
    def max_body(self) -> int:
        """Largest accepted request body in bytes."""
        return int(self.data.get("server", {}).get("max_body", 256 * 1024))

    @property
    def database(self) -> Path:
        """The SQLite database file."""
        return Path(self.data.get("database", "var/seda.db"))

    @property
    def writer_process(self) -> bool:
        """Whether group commits run in a child process (store_writer: process, the default)."""
        return bool(self.data.get("store_writer", "process") == "process")

    @property
    def flows(self) -> Path:
        """Folder of survey YAML files."""
        return Path(self.data.get("flows", "config/flows"))

    @property
    def api_token(self) -> str:
        """Bearer token the API requires (empty: no token, loopback use only)."""
        return str(self.data.get("api", {}).get("token", "") or "")

    @property
    def secret(self) -> str:
        """Key for respondent pseudonyms and tokens (empty: generated and kept in the database)."""
        return str(self.data.get("secret", "") or "")

    @property
    def backends(self) -> dict[str, dict[str, Any]]:
        """Backends by name."""
        return dict(self.data.get("backends", {}))

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        """Enabled channels by name."""
        found = self.data.get("channels", {})
        return {name: spec for name, spec in found.items() if spec.get("enabled", True)}

    @property
    def retry(self) -> dict[str, Any]:
        """Outbox retry policy."""
        return dict(self.data.get("retry", {}))

    @property
    def keep_delivered(self) -> timedelta | None:
        """How long delivered outbox rows are kept for `seda outbox replay`; None: forever."""
        value = self.data.get("outbox", {}).get("keep_delivered", KEEP_DELIVERED)
        return None if value == "forever" else duration(value)

    @property
    def keep_responses(self) -> timedelta | None:
        """How long finished responses (sessions, answers), delivery receipts and provider
        message ids are kept (gateway/store_retention.py); None: forever."""
        value = self.data.get("retention", {}).get("responses", KEEP_RESPONSES)
        return None if value == "forever" else duration(value)

    @property
    def speech(self) -> dict[str, Any]:
        """The speech block: model folders by language (asr_models.SpeechModels.from_config)."""
        return dict(self.data.get("speech", {}) or {})

    @property
    def quiet_hours(self) -> dict[str, Any]:
        """The quiet_hours block (empty: none)."""
        return dict(self.data.get("quiet_hours", {}) or {})

    @property
    def log_level(self) -> str:
        """Log level name."""
        return str(self.data.get("log", {}).get("level", "info")).upper()


def duration(text: str | int | float) -> timedelta:
    """`90s`, `30m`, `24h`, `3d`, `2w` or a number of seconds as a timedelta."""
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(f"{text!r} is not a duration: {DURATION_FORMS}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class LenientEnv(dict[str, str]):
    """An environment in which a variable that is unset and has no default reads as empty,
    for commands that read no secret (`seda outbox`, `backup`, `models`, channel checks)."""


def load_lenient(path: Path) -> Config:
    """`load`, or if that fails, `load` with unset variables empty; the first error if both do."""
    try:
        return load(path)
    except ConfigError as first:
        try:
            return load(path, env=LenientEnv(os.environ))
        except ConfigError:
            raise first from None


_BARE = re.compile(r"\$[A-Z_][A-Z0-9_]*\Z")  # the whole value: $NAME, a shell habit


def _unsubstituted(value: str) -> str | None:
    """What is wrong with a reference to the environment that would be taken literally (the
    value itself is never quoted: it may be a secret)."""
    if "${" in _ENV.sub("", value):
        return "a ${ without its } or with a name that is not letters, digits and _"
    if _BARE.match(value):
        return "$NAME is taken literally here"
    return None


def substitute(
    value: Any, env: Mapping[str, str], where: str = "", unset: list[str] | None = None
) -> Any:
    """Replace ${VAR} and ${VAR:-default} inside string values (never inside YAML syntax).
    With `unset`, a variable that is not set (and has no default) reads as empty and its
    problem is added there, so that every one is said at once."""
    if isinstance(value, dict):
        return {
            k: substitute(v, env, f"{where}.{k}" if where else str(k), unset)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute(v, env, f"{where}[{i}]", unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    wrong = _unsubstituted(value)
    if wrong:
        raise ConfigError(f"{where}: {wrong}: write ${{NAME}} or ${{NAME:-default}}")

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        if isinstance(env, LenientEnv):
            return ""
        problem = f"{where}: environment variable {name} is not set (and has no default)"
        if unset is None:
            raise ConfigError(problem)
        unset.append(problem)
        return ""

    return _ENV.sub(one, value)


# Keys whose values are credentials, or may carry them (a URL's user:password or ?key=...).
_SECRET_KEY = re.compile(r"secret|token|password|passwd|key|sid|auth|url|dsn|credential", re.I)


def _schema_problem(error: jsonschema.ValidationError) -> str:
    """jsonschema's message without the value when the value may be a secret: the message
    quotes it (after ${ENV} substitution), and config errors end up in service logs. A
    section (mapping or list) is never quoted: it may hold a secret under any key."""
    instance = error.instance
    last = str(error.absolute_path[-1]) if error.absolute_path else ""
    # A list under a secret's key (a webhook secret being rotated) holds secrets too.
    secret = any(_SECRET_KEY.search(str(part)) for part in error.absolute_path)
    choices = error.validator_value if error.validator == "anyOf" else ()
    if isinstance(choices, list) and {"const": "forever"} in choices:
        return f"{instance!r} is not a duration: {DURATION_FORMS}, or forever"
    if isinstance(instance, dict | list) or secret:
        # jsonschema quotes a value as its repr, or not at all ("Additional properties...").
        return error.message.replace(repr(instance), "the value" if last else "the file")
    return error.message


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """`file:line:column: not valid YAML: what`, without PyYAML's snippet of the offending line
    (it may hold a secret)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    context = getattr(exc, "context", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    if "'\\t'" in problem:
        problem += "; indent with spaces, not tabs"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def _read(path: Path) -> str:
    """The file's text; a folder, an unreadable file or one that is not UTF-8 is said plainly."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the configuration file in it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lines = raw[: exc.start].split(b"\n")
        column = len(lines[-1].decode("utf-8", "replace")) + 1
        raise ConfigError(
            f"{path}:{len(lines)}:{column}: not valid UTF-8 (byte {raw[exc.start]:#04x}):"
            " save the file as UTF-8"
        ) from None


def _positions(text: str) -> tuple[dict[tuple[str, ...], Position], list[str]]:
    """Where each key (and list item) starts, and the keys given twice: PyYAML keeps the last
    of two without a word, so a second `backends:` would drop the first in silence."""
    found: dict[tuple[str, ...], Position] = {(): (1, 1)}
    twice: list[str] = []

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                key = (*path, str(key_node.value))
                mark = key_node.start_mark
                if key in found and isinstance(key_node, yaml.ScalarNode):
                    first = found[key][0]
                    twice.append(
                        f"{mark.line + 1}:{mark.column + 1}: {'.'.join(key)}: given twice (first"
                        f" at line {first}); YAML would keep only this one: merge them"
                    )
                    continue
                found[key] = (mark.line + 1, mark.column + 1)
                walk(value, key)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found[(*path, str(index))] = (item.start_mark.line + 1, item.start_mark.column + 1)
                walk(item, (*path, str(index)))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return found, twice


def _position(positions: Mapping[tuple[str, ...], Position], path: tuple[str, ...]) -> Position:
    while path and path not in positions:
        path = path[:-1]
    return positions.get(path, (1, 1))


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    """The keys an `additionalProperties: false` refused, in the file's order."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    return [str(key) for key in error.instance if key not in allowed]


def _schema_line(path: Path, positions: Mapping[tuple[str, ...], Position], error: Any) -> str:
    """One schema problem as `file:line:column: key: problem`, pointing at an unknown key
    itself, with the known key it is closest to."""
    at = tuple(str(p) for p in error.absolute_path)
    problem = _schema_problem(error)
    unknown = _unknown_keys(error)
    line, column = _position(positions, (*at, *unknown[:1]))
    if unknown:
        allowed = list(error.schema.get("properties", {}))
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        if close:
            problem += f" (did you mean {close[0]!r}?)"
    return f"{path}:{line}:{column}: {'.'.join(at) or '(top)'}: {problem}"


def schema() -> dict[str, Any]:
    """The published JSON Schema of gateway.yaml."""
    text = resources.files("gateway").joinpath("schemas/gateway.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a gateway configuration file."""
    text = _read(path)
    try:
        raw = yaml.safe_load(text)
        positions, twice = _positions(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    if not isinstance(raw, dict):
        empty = "is empty" if raw is None else "must be a mapping (key: value lines)"
        raise ConfigError(f"{path}: the configuration {empty}")
    if twice:
        raise ConfigError("\n".join(f"{path}:{problem}" for problem in twice))
    unset: list[str] = []
    try:
        data = substitute(raw, os.environ if env is None else env, unset=unset)
    except ConfigError as exc:
        raise ConfigError(_at(path, positions, str(exc))) from None
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    unset_keys = tuple(problem.split(":", 1)[0] for problem in unset)
    lines = [_at(path, positions, problem) for problem in unset]
    # A value left empty by an unset variable is said as such, not as a schema problem too.
    lines += [
        _schema_line(path, positions, e)
        for e in errors
        if _dotted(e.absolute_path) not in unset_keys
    ]
    config = Config(path=path, data=data, positions=positions)
    if not errors:
        lines += [config.locate(problem) for problem in _values(data)]
    if lines:
        raise ConfigError("\n".join(lines), unset_keys)
    return config


def _dotted(parts: Any) -> str:
    """A schema error's path as substitute() writes it: `backends.crm.secret[0]`."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _at(path: Path, positions: Mapping[tuple[str, ...], Position], problem: str) -> str:
    """`file:line:column: problem` for a problem that starts with its dotted key."""
    dotted = problem.split(":", 1)[0].replace("[", ".").replace("]", "")
    line, column = _position(positions, tuple(dotted.split(".")))
    return f"{path}:{line}:{column}: {problem}"


def _values(data: Mapping[str, Any]) -> list[str]:
    """What the schema cannot say about values (a port from ${PORT} text, a duration)."""
    found = []
    port = str(data.get("server", {}).get("port", 8080))
    if int(port) > 65535:  # the schema's maximum holds for a number, not for "${PORT}" text
        found.append(f"server.port: {port} is not a port: 0 to 65535")
    for key, value in (
        ("retry.horizon", data.get("retry", {}).get("horizon", 0)),
        ("outbox.keep_delivered", data.get("outbox", {}).get("keep_delivered", KEEP_DELIVERED)),
        ("retention.responses", data.get("retention", {}).get("responses", KEEP_RESPONSES)),
    ):
        if value != "forever" or key == "retry.horizon":
            try:
                duration(value)
            except ConfigError as exc:
                found.append(f"{key}: {exc}")
    return found
