"""Structured logs, one JSON line per event, with personal data redacted."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

_EMAIL = re.compile(r"(?:mailto:)?[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone numbers in any digit script, with or without tel: and separators.
_PHONE = re.compile(r"(?:tel:|whatsapp:)?\+?[\d٠-٩۰-۹][\d٠-٩۰-۹ ()\-]{5,}[\d٠-٩۰-۹]")
# Seda's ids (UUIDs: events, responses, answers) have digit runs that look like phone numbers;
# they stay whole, so that a log line can be matched to a webhook-id or `seda outbox list`.
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PHONE_OR_ID = re.compile(f"({_UUID})|{_PHONE.pattern}")
_SENSITIVE_KEYS = frozenset({"text", "raw", "body", "transcript", "address", "secret", "token"})


def _phone(match: re.Match[str]) -> str:
    return match.group(1) or "<phone>"


# A URL keeps its scheme and host: a path or query may hold a key (Kavenegar's path, a bot
# token, a CEM webhook's token), a number or a reply, and user:password@ a password.
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/?#\s'\"@]*@)?([^/?#\s'\"]+)[^\s'\"]*")


def _url(match: re.Match[str]) -> str:
    scheme, host = match.group(1), match.group(2)
    return (
        f"{scheme}{host}" if len(match.group(0)) == len(scheme) + len(host) else f"{scheme}{host}/…"
    )


def redact(text: str) -> str:
    """Hide URLs' paths, queries and passwords, email addresses and phone numbers in free text."""
    text = _URL.sub(_url, text)
    text = _EMAIL.sub("<email>", text)
    return _PHONE_OR_ID.sub(_phone, text)


# A field whose name holds one of these is a credential however it is spelled (auth_token,
# api_key, app_secret...).
_CREDENTIAL_PARTS = ("secret", "token", "password", "api_key", "apikey", "credential")


@functools.lru_cache(maxsize=512)  # field names are a small fixed set: decided once each
def _sensitive(key: str) -> bool:
    lowered = key.lower()
    return key in _SENSITIVE_KEYS or any(part in lowered for part in _CREDENTIAL_PARTS)


def _clean(value: Any, key: str = "") -> Any:
    if _sensitive(key):
        return "<redacted>"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# Seda's own loggers; what they log is written for the log (fields, never message text).
_OWN = ("seda", "gateway", "sms", "email_in", "social", "ivr_flows", "asr_models")


def _event(record: logging.LogRecord) -> str:
    """The record's message. A library's arguments can hold anything it was handed (PTB logs
    an update it cannot parse with the whole update: names, chat ids, message text), so for
    other loggers only the message as the library wrote it is kept, without its arguments."""
    if record.args and not record.name.startswith(_OWN):
        return f"{record.msg} (arguments withheld)"
    return record.getMessage()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, and redacted fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(_event(record)),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(_clean(fields))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["detail"] = redact(str(record.exc_info[1]))
        return json.dumps(line, ensure_ascii=False, default=str)


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (at ERROR) with an exception whose text quotes the
    raw request line or header: a bearer token, a reply's text in a query. Keep only its kind,
    as a warning: a malformed request is the client's fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record of an unparsable request; let every other record through."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "malformed HTTP request refused", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.fields = {"error": type(error).__name__, "status": error.code}
        return True


def setup(level: str = "INFO") -> None:
    """Send every log record to stderr as redacted JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())
    # At DEBUG these log SQL parameters and request URLs (addresses, bot tokens): never below INFO.
    for noisy in ("aiosqlite", "httpx", "telegram"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


def fields(**values: Any) -> dict[str, Any]:
    """Structured fields for a log call: `log.info("event", extra=fields(a=1))`."""
    return {"fields": values}
