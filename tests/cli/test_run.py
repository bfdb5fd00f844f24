"""`seda run` as an operator meets it when something is in the way: a port in use, a second Seda
on the same database, a database from a newer Seda, a channel's mistake, a closed terminal.
Each is said in one line (no traceback), and a start that fails leaves nothing behind."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.ids import system_clock
from gateway.store import Store
from tests.conftest import ROOT, write_config
from tests.e2e.harness import Seda, free_port


def run(config: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`seda run` that is expected to refuse to start (killed after 30 s if it does start)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env},
        timeout=30,
    )


def refused(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert done.returncode == code, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_port_in_use_is_said_plainly_and_no_database_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = {"host": "127.0.0.1", "port": port}
        done = run(write_config(tmp_path, server=server, database="var/seda.db"), tmp_path)
    refused(done, 1, f"seda: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "seda ready" not in done.stderr  # it was logged before the bind failed
    assert not (tmp_path / "var").exists()


def test_a_port_past_65535_from_the_environment_starts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, server={"host": "127.0.0.1", "port": "${SEDA_TEST_PORT}"})
    done = run(config, tmp_path, SEDA_TEST_PORT="99999")
    refused(done, 2, "server.port: 99999 is not a port: 0 to 65535")
    assert not (tmp_path / "seda.db").exists()


async def test_a_second_seda_run_on_the_same_database_is_refused(tmp_path: Path) -> None:
    """Two would both forward every event, and each would answer from its own cache of open
    surveys while the other changes them."""
    port = free_port()
    first = Seda(write_config(tmp_path, server={"host": "127.0.0.1", "port": port}), port, tmp_path)
    await first.start()
    try:
        other = tmp_path / "other"
        other.mkdir()
        server = {"host": "127.0.0.1", "port": free_port()}
        second = write_config(other, server=server, database=str(tmp_path / "seda.db"))
        done = await asyncio.to_thread(run, second, other)
        assert first.proc is not None
        refused(done, 1, f"another seda run (pid {first.proc.pid}) is using {tmp_path / 'seda.db'}")
        async with aiohttp.ClientSession() as http, http.get(f"{first.url}/healthz") as resp:
            assert resp.status == 200  # the first goes on
    finally:
        first.stop()
    assert first.proc is not None and first.proc.returncode == 0


async def test_a_database_from_a_newer_seda_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    database = tmp_path / "seda.db"
    store = await Store.open(database, backends={}, clock=system_clock)
    await store.close()
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA user_version = 99")
    config = write_config(tmp_path, server={"host": "127.0.0.1", "port": free_port()})
    done = run(config, tmp_path)
    refused(done, 1, "seda: database schema version 99 is newer than this Seda")
    stats = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config), "outbox", "stats"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=30,
    )  # fmt: skip
    refused(stats, 1, "seda: database schema version 99 is newer than this Seda")
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (99,)


def test_a_channel_mistake_is_a_configuration_error_at_its_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The SMS channel's own error class was not a ConfigError: a traceback, after the store
    had made the database."""
    (tmp_path / "gateway.yaml").write_text(
        f"flows: {ROOT / 'config/flows'}\n"
        "server: {port: 0}\n"
        "channels:\n"
        "  sms:\n"
        "    lines:\n"
        "      main: {provider: twilo, number: '+15550001111'}\n"
    )
    done = run(tmp_path / "gateway.yaml", tmp_path)
    refused(done, 2, "gateway.yaml:6:14: channels.sms.lines.main.provider must be one of twilio")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.yaml"]  # no var/, no db


def test_a_backend_mistake_found_at_start_is_located_in_the_file(tmp_path: Path) -> None:
    short = "whsec_" + base64.b64encode(b"only-nine").decode()
    crm = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": short}
    config = write_config(tmp_path, backends={"crm": crm}, server={"port": free_port()})
    done = run(config, tmp_path)
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "crm:" in text)
    refused(done, 2, f"gateway.yaml:{line}:3: backend 'crm': webhook secret decodes to 9 bytes")
    assert short not in done.stderr


def test_a_database_folder_that_cannot_be_made_is_said_plainly(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where the folder should be")
    server = {"host": "127.0.0.1", "port": free_port()}
    done = run(write_config(tmp_path, server=server, database="var/seda.db"), tmp_path)
    refused(done, 1, "seda: not started: var: File exists (database: var/seda.db)")


def test_a_database_that_is_a_folder_or_no_database_is_said_plainly(tmp_path: Path) -> None:
    """Both were tracebacks out of sqlite3 (`database: ""` is the working folder)."""
    server = {"host": "127.0.0.1", "port": free_port()}
    for database in ("", "var"):
        (tmp_path / "var").mkdir(exist_ok=True)
        done = run(write_config(tmp_path, server=server, database=database), tmp_path)
        refused(done, 1, "is a folder; give a file, such as var/seda.db")
    (tmp_path / "notes.db").write_text("not a database")
    config = write_config(tmp_path, server=server, database="notes.db")
    refused(run(config, tmp_path), 1, "seda: cannot use the database: file is not a database")
    stats = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config), "outbox", "stats"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=30,
    )  # fmt: skip
    refused(stats, 1, "seda: cannot use the database: file is not a database")
    assert (tmp_path / "notes.db").read_text() == "not a database"


@pytest.mark.parametrize("sign", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=str)
async def test_a_signal_to_the_process_group_stops_seda_cleanly_while_busy(
    tmp_path: Path, sign: signal.Signals
) -> None:
    """A closed terminal sends SIGHUP to the whole process group (Ctrl-C sends SIGINT, a
    service manager SIGTERM). On SIGHUP Seda died at once (the signal's default action),
    skipping the clean stop; and the store writer child, killed by it too, failed the replies
    in flight with 500s. Now every reply is answered or refused at the door, and every
    acknowledged answer is stored."""
    port = free_port()
    config = write_config(tmp_path, server={"host": "127.0.0.1", "port": port})
    log = tmp_path / "seda.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--config", str(config), "run"],
            cwd=tmp_path, stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,  # a group of its own, as under a terminal
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v1"
    statuses: list[int] = []
    acked = 0

    async def respondent(http: aiohttp.ClientSession, n: int) -> None:
        nonlocal acked
        for i in range(10_000):
            who = f"tel:+98912{n:02d}{i:05d}"
            body = {"survey": "post_call_nps", "respondent": who, "language": "en"}
            reply = {"respondent": who, "text": "9", "message_id": f"{n}-{i}"}
            try:
                async with http.post(f"{url}/invitations", json=body) as resp:
                    statuses.append(resp.status)
                async with http.post(f"{url}/messages", json=reply) as resp:
                    statuses.append(resp.status)
                    acked += resp.status == 200 and (await resp.json())["answers"]
            except aiohttp.ClientError:
                return  # Seda has closed its port

    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            clients = [asyncio.create_task(respondent(http, n)) for n in range(8)]
            while acked < 50:
                await asyncio.sleep(0.05)
            os.killpg(proc.pid, sign)
            await asyncio.gather(*clients)
        assert await asyncio.to_thread(proc.wait, 20) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert '"seda stopped"' in text, text[-2000:]
    if sign == signal.SIGHUP:
        assert "SIGHUP: stopping as for SIGTERM" in text
    assert set(statuses) <= {200, 201} and "request failed" not in text, text[-2000:]
    with sqlite3.connect(tmp_path / "seda.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] >= acked


async def test_under_nohup_sighup_stays_ignored(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, server={"host": "127.0.0.1", "port": port})
    seda = Seda(config, port, tmp_path)
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it for its child
    try:
        await seda.start()
    finally:
        signal.signal(signal.SIGHUP, ignored)
    try:
        assert seda.proc is not None
        seda.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as http, http.get(f"{seda.url}/healthz") as resp:
            assert resp.status == 200
    finally:
        seda.stop()
    assert seda.proc.returncode == 0
