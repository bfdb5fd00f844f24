"""The `channels.ivr` block of gateway.yaml, read and checked once at start-up.

The same settings travel to the voice pool as JSON (`to_json` / `from_json`), so the workers
and the main process never disagree about timeouts, networks or headers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, Problems, duration

MAX_CALLS_PER_WORKER = 4  # the pjsua2-python wheel is built with PJSUA_MAX_CALLS = 4
# The workers' audio rate: telephone calls are 8 kHz (G.711), so the conference bridge, the
# prompts and the recognisers' input all stay at 8 kHz and no call is resampled (Vosk takes
# 8 kHz input for its 16 kHz models). Measured here: half the media CPU of a 16 kHz bridge.
MEDIA_RATE = 8000
DEFAULT_CONTEXT_HEADERS = ("X-Agent", "X-Queue", "X-Call-Id", "X-Ticket", "X-Store")
_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_USER = re.compile(r"^[A-Za-z0-9+*#._-]{1,64}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?$")


@dataclass(frozen=True)
class IvrSettings:
    """Everything the voice channel is configured with."""

    sip_host: str = "127.0.0.1"  # the public SIP address (Kamailio's, or the only worker's)
    sip_port: int = 5060
    workers: int = 1
    worker_host: str = "127.0.0.1"  # where the workers listen behind Kamailio
    worker_port_base: int = 5070  # worker i listens on worker_port_base + i
    calls_per_worker: int = MAX_CALLS_PER_WORKER
    rtp_port_base: int = 40000  # worker i uses rtp_port_base + 1000 * i and up
    public_address: str = ""  # the address put in SDP when it differs from the bound one
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # networks INVITEs may come from
    rate: float = 10.0  # new calls per second per source address (burst: 2 x rate)
    surveys: Mapping[str, str] = field(default_factory=dict)  # dialled user part -> survey id
    default_survey: str = ""
    language: str = ""  # empty: the survey's first language
    context_headers: tuple[str, ...] = DEFAULT_CONTEXT_HEADERS
    survey_header: str = "X-Seda-Survey"
    language_header: str = "X-Seda-Language"
    max_call: float = 600.0  # seconds; then goodbye and BYE
    no_input: float = 6.0  # seconds of silence after a prompt before it counts as no answer
    digit_timeout: float = 2.5  # seconds after a digit before a multi-digit answer is taken
    end_key: str = "#"
    repeat_key: str = "*"
    min_confidence: float = 0.4  # speech below this is treated as not understood
    end_silence: float = 0.35  # seconds of silence after words that end an answer
    open_end_silence: float = 2.0  # ...that end an open (text) answer
    speech: Mapping[str, Any] = field(default_factory=dict)  # asr_models.SpeechModels spec
    prompts_dir: str = "var/prompts"
    voices: Mapping[str, str] = field(default_factory=dict)  # language -> espeak-ng voice
    espeak: str = "espeak-ng"
    control_host: str = "127.0.0.1"  # the internal HTTP API the workers call
    control_port: int = 0  # 0: any free port (workers on this machine are told which)
    control_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    kamailio: str = "kamailio"
    kamailio_dir: str = "var/kamailio"
    log_level: str = "INFO"
    recordings: bool = True  # keep the caller's audio of answers to text questions
    recordings_dir: str = "var/recordings"
    recordings_keep_days: int = 90  # dated folders older than this are deleted
    recordings_max_seconds: int = 60  # the longest open answer (recorded or not)

    def worker_port(self, index: int) -> int:
        """The SIP port of worker `index`; with one worker, the public port itself."""
        return self.sip_port if self.workers == 1 else self.worker_port_base + index

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON, for the voice pool."""
        data = asdict(self)
        data["surveys"] = dict(self.surveys)
        data["speech"] = dict(self.speech)
        data["voices"] = dict(self.voices)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IvrSettings:
        """The settings the main process sent."""
        values = dict(data)
        for name in ("allow", "context_headers", "control_allow"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


def parse(spec: Mapping[str, Any]) -> IvrSettings:
    """IvrSettings from the channel's block; a ConfigError names every wrong key, one a line."""
    settings, problems = read(spec)
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def read(spec: Mapping[str, Any]) -> tuple[IvrSettings, list[str]]:
    """The settings as far as they can be read, and every mistake in the block (one line
    each, at its key): each key is read whatever was wrong before it."""
    where = "channels.ivr"
    p = Problems()

    sip: Mapping[str, Any] = p.value(lambda: _mapping(spec.get("sip", {}), f"{where}.sip"), {})
    workers = p.value(lambda: _int(spec.get("workers", 1), f"{where}.workers", 1, 64), 1)
    calls = p.value(
        lambda: _int(spec.get("calls_per_worker", 4), f"{where}.calls_per_worker", 1, 4), 4
    )
    surveys: dict[str, str] = p.value(
        lambda: _surveys(spec.get("surveys", {}), f"{where}.surveys"), {}
    )
    default_survey = str(spec.get("default_survey", "") or "")
    if not spec.get("surveys") and not default_survey:
        p.add(f"{where}: set default_survey or surveys (dialled number -> survey)")
    headers: tuple[str, ...] = p.value(
        lambda: _headers(spec.get("context_headers"), f"{where}.context_headers"), ()
    )
    language = str(spec.get("language", "") or "")
    if language and not _LANGUAGE.match(language):
        p.add(f"{where}.language: {language!r} is not a language code like fa or en")
    end_key = str(spec.get("end_key", "#"))
    if end_key not in ("#", "*", ""):
        p.add(f"{where}.end_key must be '#', '*' or empty")
    control: Mapping[str, Any] = p.value(
        lambda: _mapping(spec.get("control", {}), f"{where}.control"), {}
    )
    speech: Mapping[str, Any] = p.value(
        lambda: _mapping(spec.get("speech", {}), f"{where}.speech"), {}
    )
    voices: Mapping[str, Any] = p.value(
        lambda: _mapping(spec.get("voices", {}), f"{where}.voices"), {}
    )
    recordings: dict[str, Any] = p.value(
        lambda: _recordings(spec.get("recordings", {}), f"{where}.recordings"), {}
    )
    defaults = IvrSettings()

    def number(key: str, value: object, low: int = 0, high: int = 65535) -> int:
        return p.value(lambda: _int(value, f"{where}.{key}", low, high), 0)

    def real(key: str, value: object, high: float = 3600.0) -> float:
        return p.value(lambda: _float(value, f"{where}.{key}", high), 0.0)

    def seconds(key: str, value: object) -> float:
        return p.value(lambda: _seconds(value, f"{where}.{key}"), 0.0)

    def networks(key: str, value: object) -> tuple[str, ...]:
        return p.value(lambda: _networks(value, f"{where}.{key}"), ())

    settings = IvrSettings(
        sip_host=str(sip.get("host", "127.0.0.1")),
        sip_port=number("sip.port", sip.get("port", 5060), 1, 65535),
        workers=workers,
        worker_host=str(spec.get("worker_host", "127.0.0.1")),
        worker_port_base=number("worker_port_base", spec.get("worker_port_base", 5070)),
        calls_per_worker=calls,
        rtp_port_base=number("rtp_port_base", spec.get("rtp_port_base", 40000), 1024),
        public_address=str(spec.get("public_address", "") or ""),
        allow=networks("allow", spec.get("allow", defaults.allow)),
        rate=real("rate", spec.get("rate", 10), 10000.0),
        surveys=surveys,
        default_survey=default_survey,
        language=language,
        context_headers=headers,
        survey_header=str(spec.get("survey_header", "X-Seda-Survey")),
        language_header=str(spec.get("language_header", "X-Seda-Language")),
        max_call=seconds("max_call", spec.get("max_call", "10m")),
        no_input=seconds("no_input", spec.get("no_input", "6s")),
        digit_timeout=real("digit_timeout", spec.get("digit_timeout", 2.5)),
        end_key=end_key,
        min_confidence=real("min_confidence", spec.get("min_confidence", 0.4), 1.0),
        end_silence=real("end_silence", spec.get("end_silence", 0.35), 5.0),
        open_end_silence=real("open_end_silence", spec.get("open_end_silence", 2.0), 30.0),
        speech=dict(speech),
        prompts_dir=str(spec.get("prompts", "var/prompts")),
        voices={str(k): str(v) for k, v in voices.items()},
        espeak=str(spec.get("espeak", "espeak-ng")),
        control_host=str(control.get("host", "127.0.0.1")),
        control_port=number("control.port", control.get("port", 0), 0, 65535),
        control_allow=networks("control.allow", control.get("allow", defaults.control_allow)),
        kamailio=str(spec.get("kamailio", "kamailio")),
        kamailio_dir=str(spec.get("kamailio_dir", "var/kamailio")),
        log_level=str(spec.get("log_level", "INFO")).upper(),
        **recordings,
    )
    last = settings.worker_port_base + workers - 1
    if workers > 1 and settings.worker_port_base <= settings.sip_port <= last:
        ports = f"{settings.worker_port_base}-{last}"
        p.add(
            f"{where}.worker_port_base: worker ports {ports} overlap sip.port {settings.sip_port}"
        )
    return settings, p.lines


def _surveys(value: object, where: str) -> dict[str, str]:
    """surveys: dialled user part -> survey id, every wrong entry said."""
    p = Problems()
    found: dict[str, str] = {}
    for user, survey in _mapping(value, where).items():
        if not _USER.match(str(user)) or not isinstance(survey, str) or not survey:
            p.add(f"{where}: {user!r} must map a dialled number to a survey id")
        else:
            found[str(user)] = survey
    p.check()
    return found


def _headers(value: object, where: str) -> tuple[str, ...]:
    """context_headers: header names, every wrong one said."""
    if value is None:
        return DEFAULT_CONTEXT_HEADERS
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must list header names like X-Agent")
    headers = tuple(str(h) for h in value)
    wrong = [f"{where}: {h!r} is not a header name" for h in headers if not _HEADER.match(h)]
    if wrong:
        raise ConfigError("\n".join(wrong))
    return headers


def _recordings(value: object, where: str) -> dict[str, Any]:
    """The `recordings` block as IvrSettings fields (every mistake in it at once; the keys it
    does not know: gateway/config_check.py)."""
    spec = _mapping(value, where)
    p = Problems()
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        p.add(f"{where}.enabled must be true or false")
    folder = spec.get("dir", IvrSettings.recordings_dir)
    if not isinstance(folder, str) or not folder.strip():
        p.add(f"{where}.dir must be a folder path like var/recordings")
    keep = p.value(lambda: _int(spec.get("keep_days", 90), f"{where}.keep_days", 1, 36500), 0)
    most = p.value(lambda: _int(spec.get("max_seconds", 60), f"{where}.max_seconds", 1, 600), 0)
    p.check()
    return {
        "recordings": enabled,
        "recordings_dir": folder,
        "recordings_keep_days": keep,
        "recordings_max_seconds": most,
    }


def allowed(address: str, networks: tuple[str, ...]) -> bool:
    """Whether an IP address (no port) lies in one of the networks."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def prompts_path(settings: IvrSettings) -> Path:
    """The prompt cache folder."""
    return Path(settings.prompts_dir)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _int(value: object, where: str, low: int = 0, high: int = 65535) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{where} must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{where} must be a whole number") from None
    if not low <= number <= high:
        raise ConfigError(f"{where} must be between {low} and {high}")
    return number


def _float(value: object, where: str, high: float = 3600.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number")
    if not 0 <= float(value) <= high:
        raise ConfigError(f"{where} must be between 0 and {high}")
    return float(value)


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where} must be a duration like 30s or 10m")
    seconds = duration(value).total_seconds()
    if seconds <= 0:
        raise ConfigError(f"{where} must be positive")
    return seconds


def _networks(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where} must list networks like 10.0.0.0/8")
    found: list[str] = []
    for item in value:
        try:
            found.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not a network like 10.0.0.0/8") from None
    return tuple(found)
