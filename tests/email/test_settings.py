"""The channels.email block: defaults, and a clear error for every mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from email_in.settings import MIB, parse
from gateway.config import ConfigError, load
from gateway.server import create_app
from tests.conftest import write_config
from tests.email.conftest import DATA

BASE: dict[str, Any] = {
    "reply_domain": "reply.example",
    "token_secret": "0123456789abcdef",
    "from": "Seda <surveys@example.com>",
    "relay": {"host": "smtp.example.com"},
}


def test_defaults() -> None:
    settings = parse(BASE)
    assert (settings.host, settings.port) == ("127.0.0.1", 2525)
    assert settings.data_size_limit == MIB and settings.max_recipients == 10
    assert settings.hostname == "reply.example" and settings.tls_context() is None
    assert (settings.relay.port, settings.relay.starttls) == (587, True)
    assert "0123456789abcdef" not in repr(settings)


def test_starttls_context() -> None:
    cert, key = DATA / "tls/test-only.crt", DATA / "tls/test-only.key"
    settings = parse({**BASE, "tls_cert": str(cert), "tls_key": str(key), "port": "2526"})
    assert settings.tls_context() is not None and settings.port == 2526


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_secret": None}, "token_secret is required"),
        ({"token_secret": "short"}, "at least 16"),
        ({"reply_domain": "not a domain"}, "reply_domain"),
        ({"from": "nobody"}, "from: not an email address"),
        ({"from": "سدا <نظرسنجی@example.com>"}, "from: the address must be ASCII"),
        ({"relay": None}, "relay.host"),
        ({"relay": {"host": "h", "username": "u"}}, "username and password go together"),
        ({"port": 70000}, "port: a whole number"),
        ({"data_size_limit": 10}, "data_size_limit"),
        ({"tls_cert": "/nonexistent.crt"}, "tls_cert and tls_key go together"),
        ({"tls_cert": "/nonexistent.crt", "tls_key": "/nonexistent.key"}, "cannot be loaded"),
        ({"require_starttls": True}, "require_starttls needs"),
        ({"link_base": "ftp://x"}, "link_base"),
        ({"verp": "yes"}, "verp: true or false"),
        ({"subject": {"en": "Hi\nBcc: x@y.example"}}, "single lines"),
    ],
)
def test_mistakes(change: dict[str, Any], message: str) -> None:
    spec = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        parse(spec)


async def test_the_app_refuses_to_start_without_a_token_secret(tmp_path: Path) -> None:
    spec = {k: v for k, v in BASE.items() if k != "token_secret"}
    config = load(write_config(tmp_path, channels={"email": spec}))
    with pytest.raises(ConfigError, match="token_secret"):
        await create_app(config)
