"""The outage: the CEM errors, hangs, then recovers; every event arrives, in order per response."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.backends import build_backend
from gateway.forwarder import Forwarder, RetryPolicy
from gateway.ids import IdFactory, system_clock
from gateway.store import StepWrite, Store
from tests.forwarder.receiver import Answer, Received, Receiver, accept, until

SECRET = "whsec_" + base64.b64encode(b"outage-test-key-0123456789abcdef").decode()
RESPONSES = 20
EVENTS_EACH = 6  # three committed while the CEM answers 500, three while it hangs


async def fail(_: Received) -> Answer:
    return 500, {}


@pytest.mark.slow
async def test_every_event_arrives_in_order_after_errors_and_a_hang(tmp_path: Path) -> None:
    receiver = Receiver(secret=SECRET, behaviour=fail)
    url = await receiver.start()
    store = await Store.open(tmp_path / "seda.db", backends={"crm": None}, clock=system_clock)
    spec = {"type": "webhook", "url": url, "secret": SECRET, "timeout": 0.3}
    backend = build_backend("crm", spec, clock=system_clock)
    policy = RetryPolicy(base=0.05, cap=0.4, horizon=timedelta(hours=1))
    forwarder = Forwarder(
        store, {"crm": backend}, clock=system_clock, policy=policy, poll_interval=0.2
    )
    store.on_commit = forwarder.wake
    forwarder.start()
    new_id = IdFactory()
    committed: dict[str, list[str]] = defaultdict(list)  # response -> event ids, commit order
    commit_times: list[float] = []

    async def respond(r: int, numbers: range) -> None:
        response = f"resp-{r:02d}"
        for n in numbers:
            item: dict[str, Any] = {"id": new_id(), "type": "answer.recorded", "data": {"n": n}}
            started = time.monotonic()
            await store.commit(StepWrite(events=((response, item),)))
            commit_times.append(time.monotonic() - started)
            committed[response].append(item["id"])
            await asyncio.sleep(0.01)

    try:
        # Phase 1: the CEM answers 500 to everything.
        await asyncio.gather(*(respond(r, range(3)) for r in range(RESPONSES)))
        await until(lambda: len(receiver.requests) >= 2 * RESPONSES)
        # Phase 2: the CEM accepts connections but never answers (past the 0.3 s timeout).
        receiver.behaviour = receiver.hang
        hung_from = len(receiver.requests)
        await asyncio.gather(*(respond(r, range(3, EVENTS_EACH)) for r in range(RESPONSES)))
        await until(lambda: len(receiver.requests) >= hung_from + 2 * RESPONSES)
        # A backend that is down never holds up intake.
        assert max(commit_times) < 0.5
        # Phase 3: the CEM is back.
        receiver.behaviour = accept
        recovered_from = len(receiver.requests)
        receiver.release.set()
        total = RESPONSES * EVENTS_EACH
        await until(lambda: forwarder.delivered["crm"] == total, timeout=12)
    finally:
        await forwarder.stop()
        await backend.close()
        await store.close()
        await receiver.close()

    requests = receiver.requests
    assert all(r.signature_ok for r in requests)
    assert all(r.webhook_id == r.event["id"] for r in requests)  # retries keep their webhook-id
    assert sorted(set(receiver.ids(200))) == sorted(i for ids in committed.values() for i in ids)
    assert {r.answered for r in requests[:hung_from]} == {500}
    assert {r.answered for r in requests[hung_from:recovered_from]} <= {None, 503}  # hung
    assert recovered_from - hung_from >= 2 * RESPONSES
    assert len(requests) > total  # there were retries
    for response, ids in committed.items():
        arrivals = [r for r in requests if r.webhook_id in ids]
        first_seen = list(dict.fromkeys(r.webhook_id for r in arrivals))
        assert first_seen == ids, response
        # Stronger: event k+1 is never sent before event k was acknowledged.
        acked_at = {r.webhook_id: r.index for r in reversed(arrivals) if r.answered == 200}
        for earlier, later in itertools.pairwise(ids):
            assert all(r.index > acked_at[earlier] for r in arrivals if r.webhook_id == later)
    assert forwarder.dead == {"crm": 0}
