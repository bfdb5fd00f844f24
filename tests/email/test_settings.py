"""The channels.email block: defaults, and a clear error for every mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from email_in.settings import MIB, parse
from gateway.config import ConfigError, load
from gateway.config_check import check_file
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
    relay = settings.relay
    assert (relay.port, relay.tls, relay.ca_file) == (587, "starttls", None)
    assert "0123456789abcdef" not in repr(settings)


def test_starttls_context() -> None:
    cert, key = DATA / "tls/test-only.crt", DATA / "tls/test-only.key"
    settings = parse({**BASE, "tls_cert": str(cert), "tls_key": str(key), "port": "2526"})
    assert settings.tls_context() is not None and settings.port == 2526


@pytest.mark.parametrize(
    ("relay", "port", "tls"),
    [
        ({}, 587, "starttls"),
        ({"port": 465}, 465, "implicit"),  # SMTPS
        ({"port": "465"}, 465, "implicit"),  # as ${ENV} gives it
        ({"tls": "implicit"}, 465, "implicit"),
        ({"tls": "implicit", "port": 2465}, 2465, "implicit"),
        ({"tls": "none", "port": 25}, 25, "none"),
        ({"starttls": True}, 587, "starttls"),  # the older flag, as before
        ({"starttls": False, "port": 25}, 25, "none"),
        ({"tls": "starttls", "starttls": True}, 587, "starttls"),
        ({"tls": "implicit", "starttls": False}, 465, "implicit"),
    ],
)
def test_relay_tls_modes(relay: dict[str, Any], port: int, tls: str) -> None:
    settings = parse({**BASE, "relay": {"host": "smtp.example.com", **relay}})
    assert (settings.relay.port, settings.relay.tls) == (port, tls)
    assert (settings.relay.tls_context() is None) == (tls == "none")


def test_relay_ca_file() -> None:
    relay = {"host": "smtp.example.com", "port": 465, "ca_file": str(DATA / "tls/test-only.crt")}
    settings = parse({**BASE, "relay": relay})
    context = settings.relay.tls_context()
    assert settings.relay.ca_file == DATA / "tls/test-only.crt" and context is not None
    assert context.check_hostname and len(context.get_ca_certs()) == 1  # that CA, and no other


@pytest.mark.parametrize(
    ("relay", "message"),
    [
        ({"tls": "ssl"}, "relay.tls: starttls, implicit or none"),
        ({"tls": True}, "relay.tls: starttls, implicit or none"),
        ({"tls": "starttls", "starttls": False}, "starttls: false contradicts tls: starttls"),
        ({"tls": "implicit", "starttls": True}, "starttls: true contradicts tls: implicit"),
        ({"tls": "none", "starttls": True}, "starttls: true contradicts tls: none"),
        ({"port": 465, "starttls": True}, "port 465 is implicit TLS"),
        ({"port": 465, "starttls": False}, "port 465 is implicit TLS"),
        ({"starttls": "yes"}, "relay.starttls: true or false"),
        ({"ca_file": "/nonexistent.pem"}, "relay.ca_file: cannot be loaded"),
        ({"ca_file": str(DATA / "tls/test-only.key")}, "relay.ca_file: cannot be loaded"),
        ({"tls": "none", "ca_file": str(DATA / "tls/test-only.crt")}, "ca_file: only with tls"),
    ],
)
def test_relay_mistakes(relay: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({**BASE, "relay": {"host": "smtp.example.com", **relay}})


def test_a_misspelt_relay_key_is_refused_beside_other_mistakes(tmp_path: Path) -> None:
    """The relay's keys are checked as every block's are (gateway/config_check.py), with a
    near miss named, also when the block has other mistakes."""
    relay = {"host": "smtp.example.com", "verify": False, "ca-file": "/etc/ca.pem", "port": 0}
    path = write_config(tmp_path, channels={"email": {**BASE, "relay": relay}})
    problems, _, _ = check_file(path)
    assert [line.split(": ", 1)[1] for line in problems] == [
        "channels.email.relay.ca-file: unknown key (did you mean 'ca_file'?)",
        "channels.email.relay.port: a whole number from 1 to 65535",
        "channels.email.relay.verify: unknown key",
    ]


def test_every_mistake_at_once() -> None:
    """parse() said the first mistake only: an operator met the next one after each fix."""
    spec = {
        **BASE,
        "token_secret": "short",
        "port": 70000,
        "relay": {"host": "smtp.example.com", "tls": "ssl", "timeout": 0},
        "authenticity": {"policy": "strict", "dns_server": "nowhere"},
        "dkim": {"domain": "example.com", "selector": "bad selector!"},
    }
    with pytest.raises(ConfigError) as caught:
        parse(spec)
    assert str(caught.value).split("\n") == [
        "channels.email.token_secret: use at least 16 random characters",
        "channels.email.relay.tls: starttls, implicit or none",
        "channels.email.relay.timeout: a whole number from 1 to 600",
        "channels.email.port: a whole number from 0 to 65535",
        "channels.email.authenticity.policy: off, record or require",
        "channels.email.authenticity.dns_server: host:port, e.g. 127.0.0.1:53",
        "channels.email.dkim.selector: a DNS label such as seda2025",
        "channels.email.dkim.private_key: the file of the PEM private key",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_secret": None}, "token_secret is required"),
        ({"token_secret": "short"}, "at least 16"),
        ({"reply_domain": "not a domain"}, "reply_domain"),
        ({"from": "nobody"}, "from: not an email address"),
        ({"from": "سدا <نظرسنجی@example.com>"}, "from: the address must be ASCII"),
        ({"relay": None}, "relay.host"),
        ({"relay": {"host": "h", "username": "u"}}, r"relay.username: needs password beside"),
        ({"relay": {"host": "h", "password": "p"}}, r"relay.password: needs username beside"),
        ({"port": 70000}, "port: a whole number"),
        ({"data_size_limit": 10}, "data_size_limit"),
        ({"tls_cert": "/nonexistent.crt"}, r"email.tls_cert: needs tls_key beside it"),
        ({"tls_key": "/nonexistent.key"}, r"email.tls_key: needs tls_cert beside it"),
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
