"""`seda backup`: a copy as of one commit, taken while replies keep committing; refusals leave
nothing behind."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import stat
import time
from pathlib import Path

from aiohttp import ClientSession, web

from gateway.config import load
from gateway.ids import system_clock
from gateway.server import create_app
from gateway.store import Store
from tests.cli.test_cli import seda
from tests.conftest import write_config
from tests.e2e.harness import free_port

RESPONDENTS = 24


def tel(n: int) -> str:
    return f"tel:+98912000{n:04d}"


async def test_a_backup_taken_while_replies_commit_holds_every_one_acknowledged_before_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write_config(tmp_path, server={"host": "127.0.0.1", "port": port})
    runner = web.AppRunner(await create_app(load(config)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    acked: list[tuple[float, str]] = []  # (when, message id) of every acknowledged reply
    stop = asyncio.Event()
    try:
        async with ClientSession(f"http://127.0.0.1:{port}") as http:
            for n in range(RESPONDENTS):
                body = {"survey": "post_call_nps", "respondent": tel(n), "language": "en"}
                assert (await http.post("/api/v1/invitations", json=body)).status == 201

            async def respondent(n: int) -> None:
                turn = 0
                while not stop.is_set():
                    if turn % 3 == 0:  # a new response every three replies: nps, reason, yes
                        body = {"survey": "post_call_nps", "respondent": tel(n), "language": "en"}
                        await http.post("/api/v1/invitations", json=body)
                    text = ["3", "too slow", "no"][turn % 3]
                    message_id = f"m{n}-{turn}"
                    reply = {"respondent": tel(n), "text": text, "message_id": message_id}
                    async with http.post("/api/v1/messages", json=reply) as resp:
                        assert resp.status == 200, await resp.text()
                    acked.append((time.monotonic(), message_id))
                    turn += 1

            # A reader at an old snapshot (a report, say) keeps the checkpoint from moving
            # what follows into seda.db: it all stays in seda.db-wal, where a file copy would
            # miss it.
            pin = sqlite3.connect(tmp_path / "seda.db")
            pin.execute("BEGIN")
            pin.execute("SELECT COUNT(*) FROM sessions").fetchone()
            clients = [asyncio.create_task(respondent(n)) for n in range(RESPONDENTS)]
            await asyncio.sleep(0.5)
            started = time.monotonic()
            done = await asyncio.to_thread(
                seda, "--config", str(config), "backup", str(tmp_path / "copy.db")
            )
            finished = time.monotonic()
            pin.rollback()
            pin.close()
            await asyncio.sleep(0.3)  # replies go on after the copy
            stop.set()
            await asyncio.gather(*clients)
    finally:
        await runner.cleanup()

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backed up {tmp_path / 'seda.db'} to {tmp_path / 'copy.db'}")
    copy = tmp_path / "copy.db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # it holds personal data
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        kept = {
            json.loads(data)["message_id"] for (data,) in conn.execute("SELECT data FROM answers")
        }
        listed = [events.split() for (events,) in conn.execute("SELECT events FROM sessions")]
        answer_ids = {row[0] for row in conn.execute("SELECT id FROM answers")}
        responses = {row[0] for row in conn.execute("SELECT response_id FROM sessions")}
        answered = {row[0] for row in conn.execute("SELECT response_id FROM answers")}
    before = {message_id for at, message_id in acked if at < started}
    after = {message_id for at, message_id in acked if at > finished}
    assert before and after, "replies must flow before and after the copy"
    assert before <= kept  # every reply acknowledged before the copy began is in it
    assert not after & kept  # and nothing acknowledged after it ended
    # One commit's view: every answer's session is there, and every answer a session lists.
    assert answered <= responses
    assert {one for ids in listed for one in ids} & answer_ids == answer_ids
    # A restore is the copy put in the database's place: Seda opens it and reads it.
    restored = await Store.open(copy, backends={}, clock=system_clock)
    try:
        some = next(iter(responses & answered))
        assert await restored.answers_for(some)
    finally:
        await restored.close()


def test_a_backup_refuses_what_it_cannot_do_well_and_leaves_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    missing = seda("--config", str(config), "backup", str(tmp_path / "copy.db"))
    assert missing.returncode == 1
    assert f"not backed up: no database at {tmp_path / 'seda.db'}" in missing.stderr
    assert not (tmp_path / "seda.db").exists()  # not created by looking

    with sqlite3.connect(tmp_path / "seda.db") as conn:
        conn.execute("CREATE TABLE sessions (x)")
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"an earlier backup")
    exists = seda("--config", str(config), "backup", str(taken))
    assert exists.returncode == 1 and "exists: choose a new name" in exists.stderr
    assert taken.read_bytes() == b"an earlier backup"
    nowhere = seda("--config", str(config), "backup", str(tmp_path / "no" / "copy.db"))
    assert nowhere.returncode == 1 and f"no folder {tmp_path / 'no'}" in nowhere.stderr
    broken = seda("--config", str(config), "backup", str(tmp_path / "copy.db"))
    assert broken.returncode == 1 and "no such table: answers" in broken.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.yaml", "seda.db", "taken.db"]


def test_a_backup_into_a_folder_is_named_by_the_time(tmp_path: Path) -> None:
    """`seda backup /backups/` was refused as if the folder were a file that exists."""
    config = write_config(tmp_path)
    with sqlite3.connect(tmp_path / "seda.db") as conn:
        for table in ("sessions", "answers", "outbox"):
            conn.execute(f"CREATE TABLE {table} (x)")
    folder = tmp_path / "backups"
    folder.mkdir()
    done = seda("--config", str(config), "backup", str(folder))
    assert done.returncode == 0, done.stderr
    (made,) = folder.iterdir()
    assert re.fullmatch(r"seda-\d{8}T\d{6}Z\.db", made.name), made.name
    assert f"to {made} in" in done.stdout
