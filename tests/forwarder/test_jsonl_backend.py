"""The jsonl backend: one valid JSON line per event, also when fed by the forwarder."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.backends import DeliveryError, build_backend
from gateway.forwarder import Forwarder, RetryPolicy
from gateway.ids import IdFactory, system_clock
from gateway.store import StepWrite, Store
from tests.conftest import ROOT
from tests.forwarder.receiver import until


def lines(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines() if path.exists() else []


async def test_each_event_is_one_compact_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "out" / "answers.jsonl"
    backend = build_backend("file", {"type": "jsonl", "path": str(path)}, clock=system_clock)
    events = [
        {"id": f"e{n}", "type": "answer.recorded", "data": {"raw": "نه\nخیر", "value": n}}
        for n in range(20)
    ]
    try:
        await asyncio.gather(*(backend.deliver(e) for e in events))
    finally:
        await backend.close()
    written = lines(path)
    assert len(written) == 20
    assert sorted((json.loads(line) for line in written), key=lambda e: e["id"]) == sorted(
        events, key=lambda e: e["id"]
    )
    assert '"raw":"نه\\nخیر"' in written[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # answers are personal data
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_an_unwritable_path_is_a_retryable_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", "utf-8")
    spec = {"type": "jsonl", "path": str(blocker / "answers.jsonl")}
    backend = build_backend("file", spec, clock=system_clock)
    try:
        with pytest.raises(DeliveryError) as caught:
            await backend.deliver({"id": "e1", "type": "answer.recorded"})
    finally:
        await backend.close()
    assert caught.value.retryable
    # The whole path, and the part of it that is in the way.
    assert str(caught.value) == f"cannot write {blocker}/answers.jsonl: File exists: {blocker}"


def test_unknown_types_and_missing_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown type 'kafka'"):
        build_backend("x", {"type": "kafka"}, clock=system_clock)
    with pytest.raises(ValueError, match="needs a `path`"):
        build_backend("x", {"type": "jsonl"}, clock=system_clock)


async def test_forwarder_fills_the_file_in_commit_order(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    backend = build_backend("file", {"type": "jsonl", "path": str(path)}, clock=system_clock)
    store = await Store.open(tmp_path / "seda.db", backends={"file": None}, clock=system_clock)
    forwarder = Forwarder(
        store, {"file": backend}, clock=system_clock, policy=RetryPolicy(base=0.01, cap=0.05)
    )
    store.on_commit = forwarder.wake
    forwarder.start()
    new_id = IdFactory()
    sent = [{"id": new_id(), "type": "answer.recorded", "data": {"n": n}} for n in range(30)]
    try:
        for item in sent:
            await store.commit(StepWrite(events=(("r1", item),)))
        await until(lambda: len(lines(path)) == 30)
    finally:
        await forwarder.stop()
        await backend.close()
        await store.close()
    assert [json.loads(line) for line in lines(path)] == sent


async def test_a_file_rotated_away_is_left_for_a_new_one(tmp_path: Path) -> None:
    """logrotate renames the file (and deletes it a few rotations later): what follows goes to
    the configured path, never to the renamed or deleted file."""
    path = tmp_path / "answers.jsonl"
    backend = build_backend("file", {"type": "jsonl", "path": str(path)}, clock=system_clock)
    rotated = tmp_path / "answers.jsonl.1"
    try:
        await backend.deliver({"id": "e1"})
        path.rename(rotated)
        path.touch(mode=0o640)  # logrotate's `create`
        await backend.deliver({"id": "e2"})
        rotated.unlink()
        path.rename(rotated)  # no `create`: the path is gone until Seda makes it again
        await backend.deliver({"id": "e3"})
    finally:
        await backend.close()
    assert lines(rotated) == ['{"id":"e2"}']
    assert lines(path) == ['{"id":"e3"}']
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_torn_last_line_is_cut_before_appending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash in the middle of a write leaves half a line, never acknowledged (its event is
    still pending): it goes, so that the next event does not join it on one broken line."""
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id":"e1"}\n{"id":"e2","data":{"raw":"\xd9\xa9')
    backend = build_backend("file", {"type": "jsonl", "path": str(path)}, clock=system_clock)
    try:
        await backend.deliver({"id": "e2", "data": {"raw": "٩"}})
    finally:
        await backend.close()
    assert [json.loads(line)["id"] for line in lines(path)] == ["e1", "e2"]
    (record,) = [r for r in caplog.records if "torn line" in r.getMessage()]
    assert record.levelname == "WARNING" and "٩" not in str(getattr(record, "fields", ""))


# Run in a child process: a file size limit stands in for a full disk (the kernel writes what
# fits, then refuses), without limiting the test process's own files.
FULL_DISK = """
import asyncio, resource, signal, sys
from pathlib import Path
from gateway.backends import DeliveryError
from gateway.backends.jsonl import JsonlBackend

async def main(path):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    backend = JsonlBackend("file", path)
    await backend.deliver_batch(['{"id":"e1"}'])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 20, hard))
    errors = await backend.deliver_batch(['{"id":"e2","pad":"' + "x" * 100 + '"}', '{"id":"e3"}'])
    assert all(isinstance(e, DeliveryError) and e.retryable for e in errors), errors
    print(errors[0])
    assert path.read_bytes() == b'{"id":"e1"}\\n', path.read_bytes()  # nothing half written
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # the disk has room again
    assert await backend.deliver_batch(['{"id":"e2"}', '{"id":"e3"}']) == [None, None]
    await backend.close()

asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_full_disk_leaves_no_partial_line_and_the_retry_writes_whole_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "answers.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"cannot write {path}: File too large" in done.stdout
    assert lines(path) == ['{"id":"e1"}', '{"id":"e2"}', '{"id":"e3"}']
