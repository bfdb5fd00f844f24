"""Kavenegar specifics; the polled providers' common cases are rows of test_polled.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.sms.helpers import answers, invite, start

RESPONDENT = "tel:+989121234567"


def kavenegar_line(tmp_path: Path) -> dict[str, Any]:
    """A polled Kavenegar line with a spool file."""
    return {"provider": "kavenegar", "number": "10004346", "api_key": "kav-test-key",
            "poll_interval": 0.05, "spool": str(tmp_path / "kav.spool"), "footer": "لغو ۱۱"}  # fmt: skip


async def wait_answers(client: Any, response_id: str, count: int) -> dict[str, Any]:
    for _ in range(150):
        state = await answers(client, response_id)
        if len(state["answers"]) >= count:
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} answers were stored")


async def test_a_spool_in_the_older_list_format_is_replayed(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A spool written before `seen` was kept (a plain list of pending messages) still loads."""
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
