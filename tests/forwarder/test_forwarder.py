"""The forwarder with a real store and receiver: order, wake-up, 410, Retry-After, dead letter."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.backends import build_backend
from gateway.forwarder import Forwarder, RetryPolicy
from gateway.ids import system_clock
from gateway.logs import JsonFormatter
from gateway.store import StepWrite, Store
from tests.forwarder.receiver import Answer, Received, Receiver, accept, until

SECRET = "whsec_" + base64.b64encode(b"seda-test-key-0123456789abcdef!!").decode()
FAST = RetryPolicy(base=0.02, cap=0.1, horizon=timedelta(hours=1))


def event(response: str, n: int, kind: str = "answer.recorded") -> dict[str, Any]:
    data = {"response_id": response, "n": n}
    return {
        "id": f"{response}-e{n}",
        "type": kind,
        "timestamp": "2024-05-01T09:30:00Z",
        "data": data,
    }


@dataclass
class Rig:
    """A store, a receiver, a webhook backend and a forwarder wired the way the server does."""

    store: Store
    receiver: Receiver
    forwarder: Forwarder

    async def send(self, response: str, *numbers: int) -> None:
        events = tuple((response, event(response, n)) for n in numbers)
        await self.store.commit(StepWrite(events=events))


async def make_rig(tmp_path: Path, policy: RetryPolicy = FAST, **kw: Any) -> tuple[Rig, Any]:
    receiver = Receiver(secret=SECRET)
    url = await receiver.start()
    store = await Store.open(tmp_path / "seda.db", backends={"crm": None}, clock=system_clock)
    spec = {"type": "webhook", "url": url, "secret": SECRET, "timeout": kw.pop("timeout", 2)}
    backend = build_backend("crm", spec, clock=system_clock)
    options: dict[str, Any] = {"poll_interval": 0.05, **kw}
    forwarder = Forwarder(store, {"crm": backend}, clock=system_clock, policy=policy, **options)
    store.on_commit = forwarder.wake
    return Rig(store, receiver, forwarder), backend


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made, backend = await make_rig(tmp_path)
    made.forwarder.start()
    yield made
    await made.forwarder.stop()
    await backend.close()
    await made.store.close()
    await made.receiver.close()


async def test_delivers_every_event_in_order_per_response(rig: Rig) -> None:
    for n in range(3):
        for response in ("r1", "r2", "r3"):
            await rig.send(response, n)
    await until(lambda: rig.forwarder.delivered["crm"] == 9)
    assert all(r.signature_ok for r in rig.receiver.requests)
    for response in ("r1", "r2", "r3"):
        got = [i for i in rig.receiver.ids() if i.startswith(response)]
        assert got == [f"{response}-e{n}" for n in range(3)]
    assert len(rig.receiver.requests) == 9
    assert (await rig.store.outbox_stats(system_clock()))["crm"] == (0, 0.0)


async def test_a_commit_wakes_the_forwarder_before_its_poll(tmp_path: Path) -> None:
    made, backend = await make_rig(tmp_path, poll_interval=30.0)
    made.forwarder.start()
    try:
        await asyncio.sleep(0.1)  # the loop is asleep now, for up to 30 s
        await made.send("r1", 0)
        await until(lambda: made.receiver.ids(200) == ["r1-e0"], timeout=2)
    finally:
        await made.forwarder.stop()
        await backend.close()
        await made.store.close()
        await made.receiver.close()


async def test_410_disables_the_backend_until_enabled(rig: Rig) -> None:
    async def gone(_: Received) -> Answer:
        return 410, {}

    rig.receiver.behaviour = gone
    await rig.send("r1", 0, 1)
    await until(lambda: len(rig.receiver.requests) == 1)
    await asyncio.sleep(0.3)
    assert len(rig.receiver.requests) == 1  # nothing more while disabled
    assert "410" in (await rig.store.disabled_backends())["crm"]
    pending = await rig.store.list_outbox(status="pending")
    assert [r.event_id for r in pending] == ["r1-e0", "r1-e1"]

    rig.receiver.behaviour = accept
    assert await rig.store.enable_backend("crm")
    await until(lambda: rig.receiver.ids(200) == ["r1-e0", "r1-e1"])


async def test_retry_after_is_honoured(rig: Rig) -> None:
    async def busy_once(received: Received) -> Answer:
        return (429, {"Retry-After": "1"}) if received.index == 0 else (200, {})

    rig.receiver.behaviour = busy_once
    await rig.send("r1", 0)
    await until(lambda: rig.forwarder.delivered["crm"] == 1, timeout=4)
    first, second = rig.receiver.requests
    assert first.webhook_id == second.webhook_id
    # The policy alone would retry within 0.1 s; Retry-After asked for 1 s.
    assert second.at - first.at >= 0.95
    row = (await rig.store.list_outbox())[0]
    assert (row.status, row.attempts) == ("delivered", 2)


async def test_retry_after_holds_the_whole_backend(tmp_path: Path) -> None:
    """A 429 with Retry-After speaks for the receiver: the events of other responses wait too,
    instead of meeting the same limit one by one (only those already on their way arrive)."""
    policy = RetryPolicy(base=0.02, cap=5.0, horizon=timedelta(hours=1))
    made, backend = await make_rig(tmp_path, policy=policy, concurrency=2)

    async def limited(received: Received) -> Answer:
        return (429, {"Retry-After": "1"}) if received.index == 0 else (200, {})

    made.receiver.behaviour = limited
    try:
        for response in range(10):
            await made.send(f"r{response}", 0)
        made.forwarder.start()
        await until(lambda: made.forwarder.delivered["crm"] == 10, timeout=5)
    finally:
        await made.forwarder.stop()
        await backend.close()
        await made.store.close()
        await made.receiver.close()
    limited_at = made.receiver.requests[0].at
    during = [r for r in made.receiver.requests[1:] if r.at - limited_at < 0.95]
    assert len(during) <= 2, [r.webhook_id for r in during]  # in flight already, at most


async def test_an_enabled_backend_starts_a_new_delivery_cycle(tmp_path: Path) -> None:
    """Disabled (410) for longer than the horizon: once enabled, a passing error is retried, not
    taken for days of failures."""
    policy = RetryPolicy(base=0.02, cap=0.1, horizon=timedelta(seconds=0.5))
    made, backend = await make_rig(tmp_path, policy=policy)
    answers = iter([410, 503, 200])

    async def script(_: Received) -> Answer:
        return next(answers), {}

    made.receiver.behaviour = script
    made.forwarder.start()
    try:
        await made.send("r1", 0)
        await until(lambda: len(made.receiver.requests) == 1)
        await asyncio.sleep(0.8)  # disabled for longer than the horizon
        assert await made.store.enable_backend("crm")
        await until(lambda: made.forwarder.delivered["crm"] == 1)
    finally:
        await made.forwarder.stop()
        await backend.close()
        await made.store.close()
        await made.receiver.close()
    assert [r.answered for r in made.receiver.requests] == [410, 503, 200]
    assert made.forwarder.dead["crm"] == 0


async def test_a_refused_event_goes_to_the_dead_letter_and_unblocks_its_response(rig: Rig) -> None:
    async def refuse_first(received: Received) -> Answer:
        return (422, {}) if received.webhook_id == "r1-e0" else (200, {})

    rig.receiver.behaviour = refuse_first
    await rig.send("r1", 0, 1)
    await until(lambda: rig.receiver.ids(200) == ["r1-e1"])
    assert rig.receiver.ids() == ["r1-e0", "r1-e1"]
    dead = await rig.store.list_outbox(status="dead")
    assert [(r.event_id, r.last_error) for r in dead] == [("r1-e0", "HTTP 422")]
    assert rig.forwarder.dead == {"crm": 1}


async def test_retries_stop_at_the_horizon(tmp_path: Path) -> None:
    policy = RetryPolicy(base=0.02, cap=0.05, horizon=timedelta(seconds=0.3))
    made, backend = await make_rig(tmp_path, policy=policy)

    async def broken(_: Received) -> Answer:
        return 500, {}

    made.receiver.behaviour = broken
    made.forwarder.start()
    try:
        await made.send("r1", 0)
        await until(lambda: made.forwarder.dead["crm"] == 1, timeout=3)
        (row,) = await made.store.list_outbox(status="dead")
        assert row.attempts > 2 and "gave up" in (row.last_error or "")
        assert len(made.receiver.requests) == row.attempts
    finally:
        await made.forwarder.stop()
        await backend.close()
        await made.store.close()
        await made.receiver.close()


def test_backoff_is_full_jitter_capped_and_at_least_retry_after() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0)
    assert [policy.delay(n, None, lambda: 1.0) for n in (1, 2, 3, 9, 10, 500)] == [
        1.0,
        2.0,
        4.0,
        256.0,
        300.0,
        300.0,
    ]
    assert policy.delay(4, None, lambda: 0.25) == 2.0
    assert policy.delay(1, 30.0, lambda: 0.5) == 30.0
    assert policy.delay(1, 1e12, lambda: 0.5) == policy.horizon.total_seconds()


async def test_log_lines_name_the_event_and_hold_nothing_personal(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Every line the forwarder and its backends log, as the JSON formatter writes it: the event
    id and the error, never the answer, the address, the secret or the receiver's echo of them."""
    personal = ["+989121234567", "ali@example.ir", "خیلی بد بود"]

    async def echo(received: Received) -> Answer:
        # A CEM that answers with what it refused: the body never reaches a log.
        return (500 if received.index == 0 else 400), {}, b"refused: " + received.body

    rig.receiver.behaviour = echo
    caplog.set_level(logging.DEBUG)
    item = {
        **event("r1", 0),
        "data": {"respondent": {"addresses": personal[:2]}, "raw": personal[2]},
    }
    await rig.store.commit(StepWrite(events=(("r1", item),)))
    await until(lambda: rig.forwarder.dead["crm"] == 1)
    formatter = JsonFormatter()
    ours = [r for r in caplog.records if r.name.startswith("gateway.")]
    lines = [formatter.format(r) for r in ours]
    retried, dead = (json.loads(line) for line in lines if "r1-e0" in line)
    assert (retried["event"], retried["error"]) == ("delivery failed, will retry", "HTTP 500")
    assert retried["level"] == "warning"  # the first failure of a streak; its retries are info
    assert retried["event_id"] == dead["event_id"] == "r1-e0"
    assert (dead["event"], dead["error"]) == ("event moved to the dead letter", "HTTP 400")
    for text in [*personal, SECRET.removeprefix("whsec_"), item["data"]["raw"]]:
        assert all(text not in line for line in lines), text


async def test_a_failing_streak_warns_once_and_says_when_it_ends(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([503, 503, 200])

    async def flaky(_: Received) -> Answer:
        return next(answers), {}

    rig.receiver.behaviour = flaky
    caplog.set_level(logging.INFO, logger="gateway.forwarder")
    await rig.send("r1", 0)
    await until(lambda: rig.forwarder.delivered["crm"] == 1)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.forwarder"]
    assert said == [
        ("WARNING", "delivery failed, will retry"),
        ("INFO", "delivery failed, will retry"),
        ("INFO", "backend delivers again"),
    ]
