"""The `seda` command as an operator runs it: validate, simulate, and config errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from gateway.cli import main, simulate
from gateway.flows.loader import load_surveys
from tests.conftest import ROOT


def seda(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_validate_passes_the_examples() -> None:
    done = seda("validate", "config/flows")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 error(s)" in done.stderr


def test_validate_reports_every_error_and_exits_1() -> None:
    done = seda("validate", "tests/data/flows/bad/several.yaml")
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line]
    assert len(lines) >= 2
    for line in lines:
        path, row, column, message = line.split(":", 3)
        assert path.endswith("several.yaml") and row.isdigit() and column.isdigit() and message


def test_simulate_walks_a_persian_survey() -> None:
    survey = load_surveys(ROOT / "config/flows")["post_call_nps"]
    out = io.StringIO()
    code = simulate(survey, "fa", io.StringIO("نمیدونم\n۳\nصدا قطع میشد\nخیر\n"), out)
    assert code == 0
    lines = out.getvalue().splitlines()
    answers = [json.loads(line.removeprefix("> ")) for line in lines if "{" in line]
    assert [(a["question_id"], a["value"]) for a in answers] == [
        ("nps", 3),
        ("reason", "صدا قطع میشد"),
        ("resolved", False),
    ]
    assert any("[invalid]" in line for line in lines)
    assert lines[-1] == "(completed)"


def test_simulate_from_the_command_line() -> None:
    done = seda("simulate", "issue_resolved", "--lang", "ar", stdin="نعم\n")
    assert done.returncode == 0, done.stderr
    assert '"value": true' in done.stdout


def test_config_error_exits_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("channels: {fax: {enabled: true}}\nflows: " + str(ROOT / "config/flows"))
    code = main(["--config", str(bad), "run"])
    assert code == 2


def test_unknown_survey_in_simulate() -> None:
    done = seda("simulate", "nope")
    assert done.returncode == 1
    assert "no survey 'nope'" in done.stderr
