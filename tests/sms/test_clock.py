"""The clock in answers and events: UTC with its offset, and a clock that steps backwards (an
NTP correction) breaks neither the order of ids nor de-duplication. Real app, fake Twilio."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.answer_schema import assert_valid_answer
from tests.conftest import Clock
from tests.sms.helpers import answers
from tests.sms.test_expiry import until_events
from tests.sms.test_reminders import invite, reply, start, tehran


async def test_a_clock_stepped_back_keeps_ids_in_order_and_repeats_recognised(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(10))
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    invited = await invite(client)
    first = await reply(client, "۳", "SM" + "1" * 32)
    clock.now -= timedelta(hours=2)  # the system clock is corrected backwards
    assert await reply(client, "صف طولانی بود", "SM" + "2" * 32)
    assert await reply(client, "۳", "SM" + "1" * 32) == first  # a repeat, still known as one
    assert await reply(client, "خیر", "SM" + "3" * 32)
    state = await answers(client, invited["response_id"])
    assert state["status"] == "completed"
    assert [a["question_id"] for a in state["answers"]] == ["nps", "reason", "resolved"]
    ids = [a["id"] for a in state["answers"]]
    assert ids == sorted(ids) and len(set(ids)) == 3  # UUIDv7 order holds across the step
    recorded = await until_events(tmp_path, "answer.recorded", 3)
    assert [e["id"] for e in recorded] == ids  # each once, in order
    (completed,) = await until_events(tmp_path, "response.completed", 1)
    for answer in state["answers"]:
        assert_valid_answer(answer)
        assert answer["answered_at"].endswith("+00:00")
        assert answer["received_at"].endswith("+00:00")
    for event in [*recorded, completed]:
        assert event["timestamp"].endswith("+00:00")  # UTC whatever the respondent's zone
    assert completed["data"]["ended_at"].endswith("+00:00")
    assert completed["data"]["started_at"].endswith("+00:00")
