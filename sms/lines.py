"""An SMS line's settings: its provider, number, limits and footer, read from gateway.yaml and
checked (every line's problems at once), and the text a line sends."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from gateway.config import ConfigError as GatewayConfigError
from sms.base import Line, Poller, Provider
from sms.polling import poll_settings

PROVIDERS: Mapping[str, str] = {
    "twilio": "sms.twilio:Twilio",
    "vonage": "sms.vonage:Vonage",
    "plivo": "sms.plivo:Plivo",
    "kannel": "sms.kannel:Kannel",
    "jasmin": "sms.jasmin:Jasmin",
    "generic": "sms.generic:Generic",
    "kavenegar": "sms.kavenegar:Kavenegar",
    "smsir": "sms.smsir:SmsIr",
    "ghasedak": "sms.ghasedak:Ghasedak",
    "melipayamak": "sms.melipayamak:Melipayamak",
}
WEBHOOK_REPLY = frozenset({"twilio", "kannel", "generic"})  # providers that can answer inline
IRANIAN = frozenset({"kavenegar", "smsir", "ghasedak", "melipayamak"})
IRAN_FOOTER = "لغو ۱۱"  # the regulator's opt-out footer for service lines (PROTOCOLS 1.8)
MAX_BODY = 64 * 1024
MAX_SEGMENTS = 10  # a line refuses longer messages unless configured otherwise
# After a provider refuses a line's account (credentials, credit), the line sends nothing for
# this long (`account_hold`): its messages wait in the outbox instead of each asking the
# provider to refuse it again. The first message after the hold tries again.
ACCOUNT_HOLD = 60.0  # seconds


class ConfigError(GatewayConfigError):
    """The channels.sms section is wrong; the message says where (`seda run` says it as any
    configuration error, not as a traceback)."""


def make_line(name: str, spec: Mapping[str, Any], max_segments: int = MAX_SEGMENTS) -> Line:
    """A Line from its gateway.yaml mapping, checked (`max_segments`: the channel's default)."""
    where = f"channels.sms.lines.{name}"
    provider = str(spec.get("provider"))
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}.provider must be one of {', '.join(PROVIDERS)}")
    default_reply = "webhook" if provider in ("twilio", "kannel") else "api"
    reply = spec.get("reply", default_reply)
    if reply not in ("webhook", "api") or (reply == "webhook" and provider not in WEBHOOK_REPLY):
        raise ConfigError(f"{where}.reply must be api for {provider} (webhook: twilio, kannel)")
    number = spec.get("number")
    if not isinstance(number, str) or not number:
        raise ConfigError(f"{where}.number is required (the line's number or sender id)")
    rate = spec.get("rate")
    if rate is not None and (not isinstance(rate, int | float) or rate <= 0):
        raise ConfigError(f"{where}.rate must be a positive number of messages per second")
    segments = spec.get("max_segments", max_segments)
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        raise ConfigError(f"{where}.max_segments must be a whole number of SMS parts (1 or more)")
    hold = spec.get("account_hold", ACCOUNT_HOLD)
    if not isinstance(hold, int | float) or isinstance(hold, bool) or hold < 0:
        raise ConfigError(f"{where}.account_hold must be a number of seconds (0 or more)")
    default_country = "98" if provider in IRANIAN else None
    default_survey = spec.get("default_survey")
    if default_survey is not None and (not isinstance(default_survey, str) or not default_survey):
        raise ConfigError(f"{where}.default_survey must be a survey id")
    return Line(
        name=name,
        provider=provider,
        number=number,
        reply=reply,
        footer=str(spec.get("footer", IRAN_FOOTER if provider in IRANIAN else "") or ""),
        rate=float(rate) if rate is not None else None,
        verify=bool(spec.get("verify_signatures", True)),
        public_url=spec.get("public_url"),
        max_segments=segments,
        country=str(spec.get("country", default_country) or "") or None,
        default_survey=default_survey,
        spec=spec,
    )


def load_provider(line: Line, now: Callable[[], float]) -> Provider:
    """Import a line's provider module lazily and build it."""
    module, _, attr = PROVIDERS[line.provider].partition(":")
    factory: Callable[[Line, Callable[[], float]], Provider] = getattr(
        importlib.import_module(module), attr
    )
    try:
        return factory(line, now)
    except (ValueError, TypeError) as exc:
        if str(exc).startswith("channels."):
            raise ConfigError(str(exc)) from None
        # int() or float() of a setting: its message quotes the value, which may be a secret.
        reason = str(exc).split(":")[0]
        where = f"channels.sms.lines.{line.name}"
        raise ConfigError(f"{where}: a setting of this {line.provider} line: {reason}") from None


def render(prompts: list[Mapping[str, Any]]) -> str:
    """The prompts of one step as one SMS text; choices listed with their reply keys."""
    parts: list[str] = []
    for prompt in prompts:
        parts.append(str(prompt["text"]))
        for choice in prompt.get("choices", []) if prompt.get("question_type") == "choice" else []:
            parts.append(f"{choice.get('key') or choice['code']}) {choice['label']}")
    return "\n".join(parts)


@dataclasses.dataclass(frozen=True)
class SmsSettings:
    """The channel's block, read: its lines and each line's provider (not started)."""

    lines: dict[str, Line]
    providers: dict[str, Provider]
    default_line: str
    max_body: int


def parse(
    spec: Mapping[str, Any], surveys: Collection[str] | None, now: Callable[[], float]
) -> SmsSettings:
    """Read `channels.sms`; ConfigError with one line for each problem (of every line).
    `surveys`: the survey ids a default_survey may name (None: not checked)."""
    lines = spec.get("lines")
    if not isinstance(lines, Mapping) or not lines:
        raise ConfigError("channels.sms.lines must name at least one line")
    problems: list[str] = []
    max_body = spec.get("max_body", MAX_BODY)
    if isinstance(max_body, str) and max_body.isdigit():
        max_body = int(max_body)  # ${ENV} substitution yields strings
    if not isinstance(max_body, int) or isinstance(max_body, bool) or max_body < 1024:
        problems.append("channels.sms.max_body must be a whole number of bytes (1024 or more)")
    segments = spec.get("max_segments", MAX_SEGMENTS)
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        problems.append("channels.sms.max_segments must be a whole number of SMS parts")
        segments = MAX_SEGMENTS
    made: dict[str, Line] = {}
    providers: dict[str, Provider] = {}
    for key, line_spec in lines.items():
        name = str(key)
        try:
            line = make_line(name, line_spec or {}, segments)
            if surveys is not None and line.default_survey not in (None, *surveys):
                raise ConfigError(
                    f"channels.sms.lines.{name}.default_survey: no survey"
                    f" {line.default_survey!r} (surveys: {', '.join(sorted(surveys))})"
                )
            providers[name] = load_provider(line, now)
            if isinstance(providers[name], Poller):
                poll_settings(line)
            made[name] = line
        except (ConfigError, ValueError) as exc:
            problems.append(str(exc))
    default_line = str(spec.get("default_line", next(iter(lines))))
    if default_line not in lines:
        problems.append("channels.sms.default_line must name a configured line")
    if problems:
        raise ConfigError("\n".join(problems))
    return SmsSettings(made, providers, default_line, max_body)


def with_footer(footer: str, text: str) -> str:
    """The text as sent on a line with this footer (on its own last line)."""
    return f"{text}\n{footer}" if footer and text else text
