"""Survey expiry on SMS, through the real app, its store and a fake Twilio API.

The app runs on a clock the test moves; the expiry sweep is called directly (the server runs
the same call every 30 seconds).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.server import GATEWAY
from tests.conftest import Clock, read_jsonl
from tests.sms.helpers import answers
from tests.sms.test_reminders import RESPONDENT, invite, reply, start, tehran

DAY = timedelta(hours=24)  # post_call_nps: expiry 24h


def events(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    """The events of one type the jsonl backend has written so far."""
    return [e for e in read_jsonl(tmp_path / "answers.jsonl") if e["type"] == kind]


async def until_events(tmp_path: Path, kind: str, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        found = events(tmp_path, kind)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(events(tmp_path, kind))} {kind} events, not {count}")


async def test_the_expiry_sweep_leaves_alone_a_response_that_replaced_the_expired_one(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """An invitation that supersedes an expired response while the sweep is running: the
    sweep found the old response due, and must not abandon the new one in its place."""
    clock = Clock(tehran(10))
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    gateway = client.app[GATEWAY]
    others = [f"tel:+98912765{n:04d}" for n in range(20)]
    for other in others:
        await invite(client, respondent=other)
    old = await invite(client)
    clock.now += DAY + timedelta(seconds=1)
    sweep = asyncio.create_task(gateway.expire_due())
    new = await invite(client)  # while the sweep closes the others, one by one
    await sweep
    state = await answers(client, new["response_id"])
    assert state["status"] == "open"
    assert (await answers(client, old["response_id"]))["status"] == "abandoned"
    abandoned = await until_events(tmp_path, "response.abandoned", len(others) + 1)
    reasons = {e["data"]["response_id"]: e["data"]["reason"] for e in abandoned}
    assert reasons[old["response_id"]] in ("expired", "superseded")  # whichever came first
    assert new["response_id"] not in reasons


async def test_a_reply_a_second_before_expiry_counts_and_one_a_second_after_does_not(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(10))
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    invited = await invite(client)
    clock.now = tehran(10, day=3) - timedelta(seconds=1)
    assert (await reply(client, "۳", "SM" + "1" * 32) or "").startswith("متأسفیم")
    clock.now = tehran(10, day=3) + timedelta(seconds=1)
    assert await reply(client, "صف طولانی بود", "SM" + "2" * 32) is None  # nothing back
    state = await answers(client, invited["response_id"])
    assert state["status"] == "abandoned"
    assert [(a["question_id"], a["value"]) for a in state["answers"]] == [("nps", 3)]
    (abandoned,) = await until_events(tmp_path, "response.abandoned", 1)
    assert abandoned["data"]["reason"] == "expired"
    assert abandoned["data"]["answered"] == ["nps"] and abandoned["data"]["at_question"] == "reason"
    assert await client.app[GATEWAY].expire_due() == 0  # closed once, not again by the sweep
    assert len(events(tmp_path, "response.abandoned")) == 1


async def test_expiry_during_quiet_hours_closes_in_silence_and_the_pending_reminder_never_goes(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    quiet = {"start": "21:00", "end": "08:00", "timezone": "UTC", "channels": ["sms"]}
    clock = Clock(tehran(20, 59))  # just before the window: the invitation goes at once
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=quiet)
    gateway = client.app[GATEWAY]
    invited = await invite(client)
    assert "send_at" not in invited
    await fake.wait(1)
    clock.now = tehran(1, day=3)  # the reminder, due at 00:59, is moved to 08:00
    assert await gateway.remind_due() == 1
    # No sweep ran since (Seda was down all day): the reminder is still pending when the
    # response expires at 20:59, and the sweep that comes at 21:00 is inside the window.
    clock.now = tehran(21, day=3)
    assert await gateway.expire_due() == 1
    assert await gateway.remind_due() == 0
    (abandoned,) = await until_events(tmp_path, "response.abandoned", 1)
    assert abandoned["data"]["reason"] == "expired"
    clock.now = tehran(9, day=4)
    assert await gateway.remind_due() == 0
    await asyncio.sleep(0.3)
    assert len(fake.sent) == 1  # the invitation only: no reminder, no word at expiry
    assert (await answers(client, invited["response_id"]))["status"] == "abandoned"


async def test_many_responses_expire_in_one_sweep_and_after_a_restart(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(10))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    invited = [await invite(client, respondent=f"tel:+98912{n:07d}") for n in range(250)]
    await fake.wait(250)
    await client.close()
    clock.now += DAY  # due this very second, while Seda was down
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    gateway = client.app[GATEWAY]
    closed = 0
    while (found := await gateway.expire_due()) > 0:  # as the server's sweep does
        closed += found
    assert closed == 250
    abandoned = await until_events(tmp_path, "response.abandoned", 250)
    assert sorted(e["data"]["response_id"] for e in abandoned) == sorted(
        i["response_id"] for i in invited
    )
    assert {e["data"]["reason"] for e in abandoned} == {"expired"}
    assert await gateway.expire_due() == 0
    assert RESPONDENT not in {e["data"]["respondent"]["addresses"][0] for e in abandoned}
