"""The `seda` command as an operator runs it: validate, simulate, erase, and config errors."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from gateway.cli import main, simulate
from gateway.config import load
from gateway.flows.loader import load_surveys
from gateway.ids import system_clock
from gateway.server import create_app
from gateway.store import Store
from tests.conftest import ROOT, write_config
from tests.e2e.harness import free_port


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


def test_config_goes_before_or_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`seda run --config X` as well as `seda --config X run`, for nested commands too."""
    missing = str(tmp_path / "other.yaml")
    for argv in (["run", "--config", missing], ["--config", missing, "outbox", "stats"],
                 ["outbox", "stats", "--config", missing], ["outbox", "--config", missing, "stats"]):  # fmt: skip
        assert main(argv) == 2, argv
        assert f"{missing}: no such configuration file" in capsys.readouterr().err, argv


def test_outbox_and_backup_need_no_secret_from_the_environment(tmp_path: Path) -> None:
    """They read only the database; its path's default still applies in their lenient read."""
    config = write_config(
        tmp_path,
        database="${SEDA_TEST_DB:-" + str(tmp_path / "seda.db") + "}",
        backends={"crm": {"type": "webhook", "url": "http://127.0.0.1:9/hook",
                          "secret": "${SEDA_TEST_UNSET_SECRET}"}},
    )  # fmt: skip
    assert main(["--config", str(config), "run"]) == 2  # `run` does need it
    asyncio.run(make_database(tmp_path / "seda.db"))
    stats = seda("--config", str(config), "outbox", "stats")
    assert stats.returncode == 0, stats.stderr
    assert stats.stdout.startswith("crm: enabled")  # found at the default path
    done = seda("backup", str(tmp_path / "copy.db"), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "copy.db").exists()


async def make_database(path: Path) -> None:
    store = await Store.open(path, backends={}, clock=system_clock)
    await store.close()


def test_outbox_refuses_a_database_that_is_not_there(tmp_path: Path) -> None:
    """Run from the wrong folder, `var/seda.db` is not there: opening it would make an empty
    one and report a healthy, empty outbox."""
    config = write_config(tmp_path, database="var/seda.db")
    for command in (["stats"], ["list"], ["retry"]):
        done = seda("--config", str(config), "outbox", *command, cwd=tmp_path)
        assert done.returncode == 1, command
        assert done.stdout == "" and "seda: no database at var/seda.db" in done.stderr
    assert not (tmp_path / "var").exists()


def test_unknown_survey_in_simulate() -> None:
    done = seda("simulate", "nope")
    assert done.returncode == 1
    assert "no survey 'nope'" in done.stderr


async def test_erase_asks_the_running_seda_and_prints_what_went(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, server={"host": "0.0.0.0", "port": port}, api={"token": "t0k"})
    runner = web.AppRunner(await create_app(load(config)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        headers = {"Authorization": "Bearer t0k"}
        async with ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
            body = {"survey": "post_call_nps", "respondent": "tel:+989121234567", "language": "fa"}
            assert (await http.post("/api/v1/invitations", json=body)).status == 201
            done = await asyncio.to_thread(
                seda, "--config", str(config), "erase", "tel:+989121234567"
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["responses"] == 1
            assert "nothing was held" not in done.stderr
            # A national number without an sms line that names its country: searched as
            # written only, and the operator must hear so (it answered like a success that had
            # deleted nothing).
            other = await asyncio.to_thread(
                seda, "--config", str(config), "erase", "tel:0912 123 4567"
            )
            assert other.returncode == 0 and json.loads(other.stdout)["responses"] == 0
            assert "seda: warning: tel:09121234567 is a national number" in other.stderr
            assert "erase it with its country code too" in other.stderr
            assert "seda: nothing was held under 'tel:0912 123 4567'" in other.stderr
            bad = await asyncio.to_thread(seda, "--config", str(config), "erase", "nobody")
            assert bad.returncode == 1
            assert "not erased: HTTP 422" in bad.stderr and "respondent must be" in bad.stderr
    finally:
        await runner.cleanup()
    gone = seda("--config", str(config), "erase", "tel:+989121234567")  # nobody listens now
    assert gone.returncode == 1
    assert f"Seda does not answer at http://127.0.0.1:{port}/" in gone.stderr


def test_validate_and_simulate_read_the_flows_folder_of_the_configuration(tmp_path: Path) -> None:
    """`seda validate` without paths checked config/flows whatever `flows` said, so a survey that
    `seda run` would refuse passed; `seda simulate` wanted every secret of the configuration."""
    surveys = tmp_path / "surveys"
    surveys.mkdir()
    (surveys / "csat.yaml").write_text((ROOT / "config/flows/ticket_csat.yaml").read_text())
    (surveys / "typo.yaml").write_text(
        (ROOT / "config/flows/issue_resolved.yaml").read_text().replace("questions:", "qestions:")
    )
    config = write_config(
        tmp_path,
        flows="surveys",
        backends={"crm": {"type": "webhook", "url": "http://127.0.0.1:9/hook",
                          "secret": "${SEDA_TEST_UNSET_SECRET}"}},
    )  # fmt: skip
    done = seda("--config", str(config), "validate", cwd=tmp_path)
    assert done.returncode == 1
    assert "surveys/typo.yaml:" in done.stdout and "unknown key 'qestions'" in done.stdout
    (surveys / "typo.yaml").unlink()
    asked = seda("--config", str(config), "simulate", "ticket_csat", "--lang", "en", cwd=tmp_path)
    assert asked.returncode == 0 and "[prompt] From 1 to 5" in asked.stdout, asked.stderr


def test_simulate_names_the_surveys_and_languages_there_are() -> None:
    done = seda("simulate", "post_call_nsp")
    assert done.returncode == 1
    expected = "no survey 'post_call_nsp' in config/flows (there: issue_resolved, post_call_nps,"
    assert expected in done.stderr
    done = seda("simulate", "post_call_nps", "--lang", "de")
    assert done.returncode == 1
    assert "survey post_call_nps has no language 'de' (fa, ar, en)" in done.stderr
