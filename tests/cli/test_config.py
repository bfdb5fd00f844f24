"""gateway.yaml: environment substitution, schema errors with their path, the shipped default."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import ConfigError, duration, load
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, "utf-8")
    return path


def test_the_shipped_default_loads() -> None:
    config = load(ROOT / "config/gateway.yaml", env={})
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.database == Path("var/seda.db")
    assert config.backends["answers_file"] == {"type": "jsonl", "path": "var/answers.jsonl"}
    assert list(config.channels) == ["api"]


def test_environment_is_substituted_in_values_only(tmp_path: Path) -> None:
    path = write(tmp_path, "api: {token: '${TOKEN}'}\nserver: {port: '${PORT:-9000}'}\n")
    config = load(path, env={"TOKEN": "abc: {x: 1}"})
    assert config.api_token == "abc: {x: 1}"  # stays a string, never becomes YAML
    assert config.port == 9000


CASES = [
    ("missing variable", "api: {token: '${NOPE}'}\n", "gateway.yaml:1:7: api.token: environment variable NOPE"),
    ("unknown key", "servre: {port: 1}\n", "gateway.yaml:1:1: (top): Additional properties are not allowed ('servre' was unexpected) (did you mean 'server'?)"),
    ("webhook without url", "backends: {crm: {type: webhook}}\n", "gateway.yaml:1:12: backends.crm: 'url' is a required property"),
    ("bad backend type", "backends: {crm: {type: kafka}}\n", "backends.crm.type"),
    ("bad secret", "backends: {crm: {type: webhook, url: 'http://x', secret: 'plain'}}\n", "backends.crm.secret"),
    ("not a mapping", "- a\n- b\n", "must be a mapping"),
    ("bad yaml", "server: {port: [1\n", "gateway.yaml:2:1: not valid YAML"),
    ("bad horizon", "retry: {horizon: soon}\n", "gateway.yaml:1:9: retry.horizon: 'soon' is not a duration: 30s, 5m"),
    ("bad retention", "outbox: {keep_delivered: a month}\n", "outbox.keep_delivered: 'a month' is not a duration: 30s, 5m, 24h, 3d, 2w or a number of seconds, or forever"),
    ("negative retention", "outbox: {keep_delivered: -5}\n", "outbox.keep_delivered: -5 is not a duration"),
    ("bad response retention", "retention: {responses: half a year}\n", "retention.responses: 'half a year' is not a duration"),
    ("missing variable, named with its file", "api: {token: '${NOPE}'}\n", "gateway.yaml:1:7: api.token: environment variable NOPE"),
    ("a secret is never quoted", "backends: {crm: {type: webhook, url: 'http://x', secret: 'leaked-${S}'}}\n", "backends.crm.secret: the value does not match"),
    ("a rotated secret is never quoted", "backends: {crm: {type: webhook, url: 'http://x', secret: [whsec_QUJD, 'leaked-${S}']}}\n", "backends.crm.secret.1: the value does not match"),
    ("a url is never quoted", "backends: {crm: {type: webhook, url: 'x.example/?key=${S}'}}\n", "backends.crm.url: the value does not match"),
    ("yaml without the line's text", "api:\n  token: a: b\n", "gateway.yaml:2:11: not valid YAML: mapping values are not allowed here"),
    ("unknown retention key", "retention: {answers: 1d}\n", "gateway.yaml:1:13: retention: Additional properties are not allowed ('answers'"),
    ("a key given twice", "server: {port: 1}\nbackends: {a: {type: jsonl, path: a}}\nbackends: {}\n", "gateway.yaml:3:1: backends: given twice (first at line 2); YAML would keep only this one"),
    ("a tab", "server:\n\tport: 1\n", "gateway.yaml:2:1: not valid YAML: found character '\\t' that cannot start any token; indent with spaces, not tabs"),
    ("a port past 65535 from the environment", "server:\n  port: '${PORT}'\n", "gateway.yaml:2:3: server.port: 99999 is not a port: 0 to 65535"),
    ("an empty file", "", "gateway.yaml: the configuration is empty"),
    ("a ${ left open would be the token itself", "api:\n  token: '${SEDA_TOKEN'\n", "gateway.yaml:2:3: api.token: a ${ without its }"),
    ("a name that is no variable name", "api: {token: '${seda-token}'}\n", "gateway.yaml:1:7: api.token: a ${ without its } or with a name that is not letters"),
    ("a shell-style $NAME", "api: {token: $SEDA_TOKEN}\n", "gateway.yaml:1:7: api.token: $NAME is taken literally here: write ${NAME}"),
    ("a misplaced key, named at its line", "server:\n  host: 127.0.0.1\n  token: x\n", "gateway.yaml:3:3: server: Additional properties are not allowed ('token' was unexpected)"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "text", "message"), CASES, ids=[c[0] for c in CASES])
def test_errors_say_where(tmp_path: Path, label: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env={"S": "SECRET-FROM-ENV", "PORT": "99999"})
    assert message in str(caught.value)
    assert "SECRET-FROM-ENV" not in str(caught.value) and "token: a: b" not in str(caught.value)


KEPT = [
    # outbox.keep_delivered: 30 days unless configured
    ("", "keep_delivered", timedelta(days=30)),
    ("outbox: {keep_delivered: 7d}\n", "keep_delivered", timedelta(days=7)),
    ("outbox: {keep_delivered: 2w}\n", "keep_delivered", timedelta(weeks=2)),
    ("outbox: {keep_delivered: '3600'}\n", "keep_delivered", timedelta(hours=1)),
    ("outbox: {keep_delivered: 0}\n", "keep_delivered", timedelta(0)),
    ("outbox: {keep_delivered: forever}\n", "keep_delivered", None),
    # retention.responses: 180 days unless configured
    ("", "keep_responses", timedelta(days=180)),
    ("retention: {responses: 90d}\n", "keep_responses", timedelta(days=90)),
    ("retention: {responses: 0}\n", "keep_responses", timedelta(0)),
    ("retention: {responses: forever}\n", "keep_responses", None),
]


@pytest.mark.parametrize(("text", "setting", "kept"), KEPT)
def test_how_long_things_are_kept(
    tmp_path: Path, text: str, setting: str, kept: timedelta | None
) -> None:
    assert getattr(load(write(tmp_path, text or "{}\n"), env={}), setting) == kept


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(tmp_path / "absent.yaml")


def test_a_folder_or_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    """Both were tracebacks (IsADirectoryError, UnicodeDecodeError)."""
    with pytest.raises(ConfigError, match="is a folder; give the configuration file in it"):
        load(tmp_path)
    latin1 = tmp_path / "gateway.yaml"
    latin1.write_bytes(b"server:\n  host: 127.0.0.1  # caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load(latin1)
    assert (
        str(caught.value) == f"{latin1}:2:25: not valid UTF-8 (byte 0xe9): save the file as UTF-8"
    )


def test_a_bom_and_crlf_line_endings_are_read_as_usual(tmp_path: Path) -> None:
    """What Windows editors write: the same configuration."""
    path = tmp_path / "gateway.yaml"
    path.write_bytes(b"\xef\xbb\xbfserver:\r\n  port: 9001\r\n")
    assert load(path, env={}).port == 9001


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("3d", 259200), (5, 5)]
)
def test_durations(text: str | int, seconds: int) -> None:
    assert duration(text).total_seconds() == seconds
