"""`seda validate` checks survey messages against what each SMS line sends, through the CLI: a
message a line would refuse is an error, one above the default budget of parts a warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

FLOWS = "tests/data/sms/flows"
FILE = f"{FLOWS}/sms_lengths.yaml"


def seda(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `seda` command as an operator runs it, with a given gateway.yaml."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def config(tmp_path: Path, sms: dict[str, Any] | None) -> Path:
    """A gateway.yaml with this channels.sms block (or none)."""
    channels: dict[str, Any] = {"api": {"enabled": True}}
    if sms is not None:
        channels["sms"] = sms
    path = tmp_path / "gateway.yaml"
    data = {"database": str(tmp_path / "seda.db"), "channels": channels}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


SMSIR = {"provider": "smsir", "number": "30004505000017", "api_key": "k"}
TWILIO = {"provider": "twilio", "number": "+15005550006", "account_sid": "AC1", "auth_token": "t"}
CASES = [
    # label, channels.sms, expected problems as (line, column, words in the message); a message
    # a line would refuse to send is an error, one above the default budget of parts a warning
    ("iranian line: footer, warned above 2 parts", {"lines": {"ir": SMSIR}}, [
        (18, 11, "warning: SMS: the first message (intro and question 'nps') (fa) needs 3 SMS "
                 "parts (UCS-2, 140 characters with the footer); more than 2 on line ir"),
        (19, 11, "warning: SMS: the first message (intro and question 'nps') (en) needs 3 SMS "
                 "parts (UCS-2"),
        (28, 11, "warning: SMS: question 'topic' (en) needs 3 SMS parts (UCS-2, 157 characters "
                 "with the footer)"),
        (41, 11, "warning: SMS: the invalid-reply prompt of question 'topic' (en) needs 3 SMS "
                 "parts"),
        # the reminder's text and then the question again, with the longest question
        (46, 9, "warning: SMS: the reminder (with question 'topic') (fa) needs 3 SMS parts "
                "(UCS-2, 165 characters with the footer)"),
        (47, 9, "warning: SMS: the reminder (with question 'topic') (en) needs 4 SMS parts "
                "(UCS-2, 205 characters with the footer)"),
    ]),
    ("line allows 3", {"lines": {"ir": {**SMSIR, "max_segments": 3}}}, [
        (47, 9, "SMS: the reminder (with question 'topic') (en) needs 4 SMS parts (UCS-2, 205 "
                "characters with the footer); line ir refuses messages longer than 3 parts"),
    ]),
    ("line allows 4", {"lines": {"ir": {**SMSIR, "max_segments": 4}}}, []),
    ("no footer, line refuses over 1", {"lines": {"tw": {**TWILIO, "max_segments": 1}}}, [
        (18, 11, "SMS: the first message (intro and question 'nps') (fa) needs 2 SMS parts "
                 "(UCS-2, 133 characters); line tw refuses messages longer than 1 part"),
        (27, 11, "SMS: question 'topic' (fa) needs 2 SMS parts (UCS-2, 122 characters); line tw refuses"),
        (40, 11, "SMS: the invalid-reply prompt of question 'topic' (fa) needs 2 SMS parts (UCS-2, "
                 "105 characters); line tw refuses"),
        (46, 9, "SMS: the reminder (with question 'topic') (fa) needs 3 SMS parts (UCS-2, 158 "
                "characters); line tw refuses"),
        (47, 9, "SMS: the reminder (with question 'topic') (en) needs 2 SMS parts (GSM-7, 198 "
                "characters); line tw refuses"),
    ]),
    ("channel default of 1", {"max_segments": 1, "lines": {"tw": TWILIO}}, [
        (18, 11, "line tw refuses"), (27, 11, "line tw refuses"), (40, 11, "line tw refuses"),
        (46, 9, "line tw refuses"), (47, 9, "line tw refuses"),
    ]),
    ("footer switched off, default budget", {"lines": {"ir": {**SMSIR, "footer": ""}}}, [
        (46, 9, "warning: SMS: the reminder (with question 'topic') (fa) needs 3 SMS parts "
                "(UCS-2, 158 characters)"),
    ]),
    ("two lines alike share a problem", {"lines": {"a": SMSIR, "b": {**SMSIR, "number": "3000"}}}, [
        (18, 11, "more than 2 on line a, b"), (19, 11, "on line a, b"), (28, 11, "on line a, b"),
        (41, 11, "on line a, b"), (46, 9, "on line a, b"), (47, 9, "on line a, b"),
    ]),
    ("no sms channel", None, []),
]  # fmt: skip


@pytest.mark.parametrize(("label", "sms", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validate_checks_sms_lengths(
    label: str, sms: dict[str, Any] | None, expected: list[tuple[int, int, str]], tmp_path: Path
) -> None:
    done = seda(config(tmp_path, sms), "validate", FLOWS)
    refused = [e for e in expected if "refuses" in e[2]]
    assert done.returncode == (1 if refused else 0), done.stdout + done.stderr
    summary = f"{len(refused)} error(s), {len(expected) - len(refused)} warning(s)"
    assert summary in done.stderr, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    assert len(lines) == len(expected), done.stdout
    for line, (row, column, words) in zip(lines, expected, strict=True):
        path, at_row, at_column, message = line.split(":", 3)
        assert (path, int(at_row), int(at_column)) == (FILE, row, column)
        # an error is printed without a severity word, as the loader's errors are
        kind = " SMS: " if "refuses" in words else " warning: SMS: "
        assert message.startswith(kind) and words in message, message


def test_errors_still_fail_and_only_good_files_are_checked(tmp_path: Path) -> None:
    bad = "tests/data/flows/bad/several.yaml"
    done = seda(config(tmp_path, {"lines": {"ir": SMSIR}}), "validate", bad, FLOWS)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line]
    errors = [line for line in lines if "warning:" not in line]
    warnings = [line for line in lines if "warning: SMS:" in line]
    assert errors and all(line.startswith(bad) for line in errors)
    assert len(warnings) == 6 and all(line.startswith(FILE) for line in warnings)


def test_a_config_that_cannot_be_read_is_an_error_and_skips_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("channels: [not, a, mapping]\n", "utf-8")
    done = seda(path, "validate", FLOWS)
    assert done.returncode == 1
    assert done.stdout == f"{path}:1:1: channels: the value is not of type 'object'\n"
