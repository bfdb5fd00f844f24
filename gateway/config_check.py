"""The whole configuration checked before anything starts, as `seda validate` and `seda run`
both say it: every problem at once, each at its place in gateway.yaml.

A channel checks its own block with its own parsing (`check_settings` on its factory, see
registry.SettingsCheck): there is no second schema of channel settings to drift from the code.
Which keys a block has that its parser never looked up are found by handing the parser a
`Reading` of the block, which remembers what was looked up.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from gateway import registry
from gateway.backends import build_backend, event_types
from gateway.config import Config, ConfigError, LenientEnv, load
from gateway.flows.loader import SurveyError, load_surveys
from gateway.ids import system_clock
from gateway.quiet import QuietHours, QuietHoursError

CORE_KEYS = frozenset({"enabled"})  # read by the core for every channel (Config.channels)
_DOTTED = re.compile(r"channels(?:\.[\w-]+)+")


class Reading(Mapping[str, Any]):
    """A settings block that remembers which keys its parser looked up. A key given but never
    looked up is one the channel does not know (a typo, or another provider's setting). A
    block the parser went through as a whole (`for name in ...`: lines, bots, languages) holds
    names, not keys."""

    def __init__(self, data: Mapping[str, Any], where: str, trail: list[str] | None = None):
        self._data = data
        self.where = where
        self.looked: set[str] = set()
        self.listed = False
        self.copied = False
        self.children: dict[str, Reading] = {}
        self.trail = trail if trail is not None else [where]  # the last key looked up

    def __getitem__(self, key: str) -> Any:
        self.looked.add(str(key))
        self.trail[0] = f"{self.where}.{key}"
        value = self._data[key]
        if isinstance(value, Mapping):
            return self._child(str(key), value)
        if isinstance(value, list):  # a list of mappings: rules, ...
            return [
                self._child(f"{key}.{i}", item) if isinstance(item, Mapping) else item
                for i, item in enumerate(value)
            ]
        return value

    def _child(self, key: str, value: Mapping[str, Any]) -> Reading:
        if key not in self.children:
            self.children[key] = Reading(value, f"{self.where}.{key}", self.trail)
            # Reached by going through this block as a whole: copied (dict(block)) or parsed
            # on its own (a line of `lines`); only in the second case is something looked up.
            self.children[key].copied = self.listed
        return self.children[key]

    def __iter__(self) -> Iterator[str]:
        self.listed = True
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Reading({self.where})"  # never the values: they may be secrets

    def blocks(self) -> Iterator[Reading]:
        """This block and every block under it that the parser opened."""
        yield self
        for child in self.children.values():
            yield from child.blocks()

    def unknown(self, failed: bool, ignore: Collection[str] = ()) -> list[str]:
        """`where.key: unknown key` for each key never looked up. Where the parser stopped at a
        problem in this block or above it (`failed`), what it did not reach yet is not unknown:
        only a near miss of a key it looked for and did not find is said then."""
        if self.listed or (self.copied and not self.looked):
            return []
        absent = sorted(k for k in self.looked if k not in self._data)
        found = []
        for key in self._data:
            if str(key) in self.looked or str(key) in ignore:
                continue
            close = difflib.get_close_matches(str(key), absent or sorted(self.looked), n=1)
            if failed and not (absent and close):
                continue
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            found.append(f"{self.where}.{key}: unknown key{hint}")
        return found


def problems(
    config: Config, surveys: Collection[str] | None, skip: Collection[str] = ()
) -> list[str]:
    """Every problem of the configuration beyond its schema (which `config.load` checks):
    quiet hours, backends and each enabled channel's block, located in the file, in the
    file's order. `surveys`: the survey ids there are (None: not known, not checked). A
    problem under a key in `skip` (a value from an unset variable) is left out."""
    found: list[str] = []
    with _quiet():
        found += _quiet_hours(config)
        for name in config.backends:
            found += backend_problems(config, name)
        for name in config.channels:
            found += channel_problems(config, name, surveys)
    kept = [line for line in found if not _under(line, skip)]
    located = [config.locate(line) for line in kept]
    return sorted(located, key=lambda line: _where(config, line))


def backend_problems(config: Config, name: str) -> list[str]:
    """A backend built as `seda run` builds it (not started), and the keys it never read."""
    spec = Reading(config.backends[name], f"backends.{name}")
    try:
        event_types(spec)
        build_backend(name, spec, clock=system_clock)
    except (ValueError, TypeError) as exc:  # a bad secret, timeout...
        return [str(exc)]
    return [line for block in spec.blocks() for line in block.unknown(False)]


def channel_problems(config: Config, name: str, surveys: Collection[str] | None) -> list[str]:
    """A channel's own check of its block, and the keys in it that the check never read."""
    try:
        factory = registry.load(name)
    except registry.UnknownChannel as exc:
        return [f"channels.{name}: {exc}"]
    check = getattr(factory, "check_settings", None)
    if not callable(check):
        return []
    given = config.channels[name]
    shared = {"speech": config.speech} if config.speech and "speech" not in given else {}
    spec = Reading({**given, **shared}, f"channels.{name}")
    # A check that goes on past a mistake has looked up every key it knows: what it did not
    # look up is unknown beside a mistake too. Others stop at a line's first mistake.
    whole = getattr(factory, "checks_whole_block", False) is True
    try:
        found: list[str] = list(check(spec, surveys))
    except ConfigError as exc:
        found, whole = str(exc).split("\n"), False
    except Exception as exc:  # a value of a type the parser did not expect: said, at its key
        reason = str(exc).split(":")[0]  # not the value itself: it may be a secret
        found = [f"{spec.trail[0]}: not a valid value ({type(exc).__name__}: {reason})"]
        whole = False
    failed = set() if whole else {_deepest(spec, line) for line in found}
    for block in spec.blocks():
        ignore = CORE_KEYS | set(shared) if block is spec else ()
        stopped = any(f"{block.where}.".startswith(f"{where}.") for where in failed)
        found += block.unknown(stopped, ignore)
    return found


def _deepest(spec: Reading, line: str) -> str:
    """The deepest block a problem's key lies in."""
    match = _DOTTED.match(line)
    dotted = match.group(0) if match else spec.where
    blocks = [b.where for b in spec.blocks() if f"{dotted}.".startswith(f"{b.where}.")]
    return max(blocks, key=len, default=spec.where)


def _quiet_hours(config: Config) -> list[str]:
    try:
        quiet = QuietHours.from_config(config.quiet_hours)
    except QuietHoursError as exc:
        return [str(exc)]
    if quiet is None:
        return []
    return [unknown_quiet_channel(quiet)] if unknown_quiet_channel(quiet) else []


def unknown_quiet_channel(quiet: QuietHours) -> str:
    """What is wrong with quiet_hours.channels: a name that is no channel (empty: nothing)."""
    unknown = sorted(quiet.channels - set(registry.CHANNELS))
    if not unknown:
        return ""
    known = ", ".join(sorted(registry.CHANNELS))
    return f"quiet_hours.channels: no channel {unknown[0]!r} ({known})"


def _under(line: str, keys: Collection[str]) -> bool:
    return any(line.startswith((f"{key}:", f"{key}.", f"{key} ")) for key in keys)


def _where(config: Config, line: str) -> tuple[int, int]:
    parts = line.removeprefix(f"{config.path}:").split(":", 2)
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return 0, 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Building a backend to check it may warn (a webhook without a secret); `seda run` says
    so when it builds the real one, and `seda validate` says only what is wrong."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def check_file(path: Path) -> tuple[list[str], Config | None, list[str]]:
    """Every problem of a configuration file, as `seda validate` and `seda run` say them; the
    configuration (None when it cannot be read far enough to check its channels); and the
    problems of its surveys (which `seda validate` reports in its own way). An unset variable
    is named, never its value, and the rest is checked as if it were empty."""
    skip: tuple[str, ...] = ()
    try:
        config, lines = load(path), []
    except ConfigError as exc:
        lines = str(exc).split("\n")
        if not exc.unset:
            return lines, None, []
        try:
            config = load(path, env=LenientEnv(os.environ))
        except ConfigError:
            return lines, None, []
        skip = exc.unset
    try:
        surveys: Collection[str] | None = load_surveys(config.flows)
        survey_problems: list[str] = []
    except SurveyError as exc:
        surveys, survey_problems = None, [str(p) for p in exc.problems]
    return lines + problems(config, surveys, skip), config, survey_problems
