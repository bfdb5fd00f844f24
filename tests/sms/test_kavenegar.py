"""Kavenegar: polled inbound through receive.json, sends through send.json, a spool for crashes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.answer_schema import assert_valid_answer
from tests.sms.helpers import DATA, answers, invite, start

RESPONDENT = "tel:+989121234567"


def kavenegar_line(tmp_path: Path) -> dict[str, Any]:
    """A polled Kavenegar line with a spool file."""
    return {"provider": "kavenegar", "number": "10004346", "api_key": "kav-test-key",
            "poll_interval": 0.05, "spool": str(tmp_path / "kav.spool"), "footer": "لغو ۱۱"}  # fmt: skip


def recorded_entries() -> list[dict[str, Any]]:
    """The entries of a recorded receive.json answer."""
    entries: list[dict[str, Any]] = json.loads(
        (DATA / "kavenegar/receive.json").read_text("utf-8")
    )["entries"]
    return entries


async def wait_answers(client: Any, response_id: str, count: int) -> dict[str, Any]:
    for _ in range(150):
        state = await answers(client, response_id)
        if len(state["answers"]) >= count:
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} answers were stored")


async def test_polled_reply_is_answered_once(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    lines = {"kav1": kavenegar_line(tmp_path)}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    invited = await invite(client, RESPONDENT, line="kav1")
    sent = await fake.wait(1)
    assert sent[0]["path"] == "/v1/kav-test-key/sms/send.json"
    first = sent[0]["body"]
    assert first["receptor"] == "09121234567" and first["sender"] == "10004346"
    assert first["localid"] and first["message"].endswith("\nلغو ۱۱")

    fake.inbox.extend(recorded_entries())
    state = await wait_answers(client, invited["response_id"], 1)
    answer = state["answers"][0]
    assert (answer["value"], answer["message_id"], answer["provider"]) == (
        8,
        "26901234",
        "kavenegar",
    )
    assert_valid_answer(answer)
    sent = await fake.wait(2)
    assert sent[1]["body"]["message"].startswith("آیا مشکل")
    assert sent[1]["body"]["localid"] != first["localid"]

    fake.inbox.extend(recorded_entries())  # the same message again: de-duplicated by messageid
    await asyncio.sleep(0.3)
    assert len((await answers(client, invited["response_id"]))["answers"]) == 1
    assert len(fake.sent) == 2
    assert json.loads((tmp_path / "kav.spool").read_text("utf-8")) == []


async def test_spooled_messages_survive_a_crash(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A message fetched (so marked read) before a crash is in the spool and stored at start."""
    lines = {"kav1": kavenegar_line(tmp_path)}
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    invited = await invite(client, RESPONDENT, line="kav1")
    await client.close()  # the process "crashed" after fetching, before storing
    spool = [{"key": "26901235", "sender": RESPONDENT, "text": "۹", "message_id": "26901235"}]
    (tmp_path / "kav.spool").write_text(json.dumps(spool, ensure_ascii=False), "utf-8")
    lines = {"kav1": kavenegar_line(tmp_path)}  # a fresh fake provider after the restart
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    state = await wait_answers(client, invited["response_id"], 1)
    assert state["answers"][0]["value"] == 9


async def test_webhook_is_refused_for_a_polled_line(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _ = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"kav1": kavenegar_line(tmp_path)}
    )
    resp = await client.post("/sms/kav1", data={"from": "09121234567", "message": "۹"})
    assert resp.status == 403
