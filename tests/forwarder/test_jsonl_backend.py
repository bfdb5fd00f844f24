"""The jsonl backend: one valid JSON line per event, also when fed by the forwarder."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from gateway.backends import DeliveryError, build_backend
from gateway.forwarder import Forwarder, RetryPolicy
from gateway.ids import IdFactory, system_clock
from gateway.store import StepWrite, Store
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
        with pytest.raises(DeliveryError, match=r"cannot write answers\.jsonl") as caught:
            await backend.deliver({"id": "e1", "type": "answer.recorded"})
    finally:
        await backend.close()
    assert caught.value.retryable


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
