"""Crash test: SIGKILL `seda run` under load; every acknowledged reply is stored once and delivered."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.answer_schema import assert_valid_answer
from tests.conftest import write_config
from tests.e2e.harness import SECRET, Receiver, Seda, free_port

RESPONDENTS = 1000  # two replies each: 2,000 replies
CLIENTS = 8


class Load:
    """Clients that answer post_call_nps for many respondents and note what was acknowledged."""

    def __init__(self) -> None:
        self.acked: dict[str, str] = {}  # message id -> response id
        self.kill_after = random.randint(300, 1500)
        self.killed = asyncio.Event()

    async def respondent(self, http: aiohttp.ClientSession, base: str, n: int) -> None:
        address = f"tel:+98912{n:07d}"
        invite = {
            "survey": "post_call_nps",
            "respondent": address,
            "language": "fa",
            "context": {"agent": f"a{n % 7}"},
            "invitation_id": f"inv-{n}",
        }
        await self.post(http, f"{base}/api/v1/invitations", invite, None)
        for k, text in enumerate(["۹", "بله"]):
            body = {"respondent": address, "text": text, "message_id": f"m-{n}-{k}"}
            await self.post(http, f"{base}/api/v1/messages", body, f"m-{n}-{k}")

    async def post(
        self, http: aiohttp.ClientSession, url: str, body: dict[str, Any], message_id: str | None
    ) -> None:
        # Retry until acknowledged: the same ids, so a retry after a commit changes nothing.
        while True:
            try:
                async with http.post(url, json=body) as resp:
                    if resp.status in (200, 201):
                        data = await resp.json()
                        if message_id is not None:
                            assert data["status"] == "accepted", data
                            self.acked[message_id] = data["response_id"]
                            if len(self.acked) >= self.kill_after:
                                self.killed.set()
                        return
                    assert resp.status >= 500, (resp.status, await resp.text())
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.05)

    async def client(self, base: str, numbers: list[int]) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for n in numbers:
                await self.respondent(http, base, n)


@pytest.mark.slow
async def test_sigkill_loses_no_acknowledged_reply(tmp_path: Path) -> None:
    receiver = Receiver()
    url = await receiver.start()
    port = free_port()
    config = write_config(
        tmp_path,
        server={"host": "127.0.0.1", "port": port},
        backends={"cem": {"type": "webhook", "url": url, "secret": SECRET, "timeout": 5}},
    )
    seda = Seda(config, port, tmp_path)
    await seda.start()
    load = Load()
    numbers = list(range(RESPONDENTS))
    clients = [
        asyncio.create_task(load.client(seda.url, numbers[i::CLIENTS])) for i in range(CLIENTS)
    ]
    try:
        await asyncio.wait_for(load.killed.wait(), 120)
        seda.kill()
        acked_at_kill = len(load.acked)
        await asyncio.sleep(0.5)
        await seda.start()
        await asyncio.wait_for(asyncio.gather(*clients), 300)
        assert len(load.acked) == 2 * RESPONDENTS
        assert acked_at_kill < 2 * RESPONDENTS  # the kill really happened mid-load

        for _ in range(600):
            delivered = {
                d["event"]["data"].get("message_id")
                for d in receiver.deliveries
                if d["event"]["type"] == "answer.recorded"
            }
            # Each response's completion follows its last answer in the same order key: wait
            # for those too, not only the answers.
            ended = {
                d["event"]["data"]["response_id"]
                for d in receiver.deliveries
                if d["event"]["type"] == "response.completed"
            }
            if delivered >= set(load.acked) and len(ended) >= RESPONDENTS:
                break
            await asyncio.sleep(0.1)
    finally:
        seda.stop()
        await receiver.stop()
        for task in clients:
            task.cancel()

    # Stored exactly once: one answer row per acknowledged message id.
    with sqlite3.connect(tmp_path / "seda.db") as db:
        rows = [json.loads(r[0]) for r in db.execute("SELECT data FROM answers")]
    stored: dict[str, int] = {}
    for row in rows:
        stored[row["message_id"]] = stored.get(row["message_id"], 0) + 1
    assert set(stored) == set(load.acked)
    assert set(stored.values()) == {1}

    # Delivered at least once; a repeat only ever carries the same idempotency key.
    assert receiver.bad_signatures == 0
    answers = [d for d in receiver.deliveries if d["event"]["type"] == "answer.recorded"]
    keys: dict[str, set[str]] = {}
    for delivery in answers:
        data = delivery["event"]["data"]
        assert delivery["webhook_id"] == data["id"]
        keys.setdefault(data["message_id"], set()).add(delivery["webhook_id"])
    assert set(keys) == set(load.acked)
    assert all(len(ids) == 1 for ids in keys.values())
    for delivery in answers[:50]:
        assert_valid_answer(delivery["event"]["data"])
    completed = {
        d["event"]["data"]["response_id"]
        for d in receiver.deliveries
        if d["event"]["type"] == "response.completed"
    }
    assert len(completed) == RESPONDENTS
