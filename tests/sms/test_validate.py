"""`seda validate` warns about survey messages longer than an SMS line allows, through the CLI."""

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


SMSIR = {"provider": "smsir", "number": "30004505000017", "api_key": "${SMSIR_KEY_UNSET_HERE}"}
TWILIO = {"provider": "twilio", "number": "+15005550006", "account_sid": "AC1", "auth_token": "t"}
CASES = [
    # label, channels.sms, expected warnings as (line, column, words in the message)
    ("iranian line: footer, warned above 2 parts", {"lines": {"ir": SMSIR}}, [
        (18, 11, "the first message (intro and question 'nps') (fa) needs 3 SMS parts (UCS-2, "
                 "140 characters with the footer); more than 2 on line ir"),
        (19, 11, "the first message (intro and question 'nps') (en) needs 3 SMS parts (UCS-2"),
        (28, 11, "question 'topic' (en) needs 3 SMS parts (UCS-2, 157 characters with the footer)"),
        (41, 11, "the invalid-reply prompt of question 'topic' (en) needs 3 SMS parts"),
    ]),
    ("line allows 3", {"lines": {"ir": {**SMSIR, "max_segments": 3}}}, []),
    ("no footer, line refuses over 1", {"lines": {"tw": {**TWILIO, "max_segments": 1}}}, [
        (18, 11, "(fa) needs 2 SMS parts (UCS-2, 133 characters); line tw refuses messages "
                 "longer than 1 part"),
        (27, 11, "question 'topic' (fa) needs 2 SMS parts"),
        (40, 11, "the invalid-reply prompt of question 'topic' (fa) needs 2 SMS parts"),
    ]),
    ("channel default of 1", {"max_segments": 1, "lines": {"tw": TWILIO}}, [
        (18, 11, "line tw refuses"), (27, 11, "line tw refuses"), (40, 11, "line tw refuses"),
    ]),
    ("footer switched off, default budget", {"lines": {"ir": {**SMSIR, "footer": ""}}}, []),
    ("two lines alike share a warning", {"lines": {"a": SMSIR, "b": {**SMSIR, "number": "3000"}}}, [
        (18, 11, "more than 2 on line a, b"), (19, 11, "on line a, b"), (28, 11, "on line a, b"),
        (41, 11, "on line a, b"),
    ]),
    ("no sms channel", None, []),
]  # fmt: skip


@pytest.mark.parametrize(("label", "sms", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validate_warns_about_long_sms(
    label: str, sms: dict[str, Any] | None, expected: list[tuple[int, int, str]], tmp_path: Path
) -> None:
    done = seda(config(tmp_path, sms), "validate", FLOWS)
    assert done.returncode == 0, done.stdout + done.stderr  # warnings never fail validate
    assert f"0 error(s), {len(expected)} warning(s)" in done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    assert len(lines) == len(expected), done.stdout
    for line, (row, column, words) in zip(lines, expected, strict=True):
        path, at_row, at_column, message = line.split(":", 3)
        assert (path, int(at_row), int(at_column)) == (FILE, row, column)
        assert message.startswith(" warning: SMS: ") and words in message, message


def test_errors_still_fail_and_only_good_files_are_checked(tmp_path: Path) -> None:
    bad = "tests/data/flows/bad/several.yaml"
    done = seda(config(tmp_path, {"lines": {"ir": SMSIR}}), "validate", bad, FLOWS)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line]
    errors = [line for line in lines if "warning:" not in line]
    warnings = [line for line in lines if "warning: SMS:" in line]
    assert errors and all(line.startswith(bad) for line in errors)
    assert len(warnings) == 4 and all(line.startswith(FILE) for line in warnings)


def test_a_config_that_cannot_be_read_skips_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("channels: [not, a, mapping]\n", "utf-8")
    done = seda(path, "validate", FLOWS)
    assert done.returncode == 0
    assert "seda: channel checks skipped" in done.stderr and done.stdout == ""
