"""Upgrading Seda keeps its data: a database written by the first Seda (schema version 1, commit
99cbfff, made by tests/data/store/make_v1_db.py) opened by this one.

It holds two open responses (one in Persian, mid-survey), a completed one, an opted-out
respondent, and six events a webhook backend never received. After the migrations the events
reach the backend as they were, the open surveys go on where they stopped, and the opt-out holds.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import load
from gateway.server import create_app
from gateway.store_schema import SCHEMA_VERSION
from tests.answer_schema import assert_valid_answer
from tests.conftest import Clock, write_config
from tests.e2e.harness import SECRET, Receiver
from tests.forwarder.receiver import until

OLD = Path(__file__).resolve().parent.parent / "data/store/seda-v1.db"
PERSIAN = ("tel:+989121111111", "01a25162-020a-7000-9de6-3a4d518bcdc8")  # at "resolved"
DETRACTOR = ("tel:+15550000002", "01a25162-0211-7000-9d38-cb94331803ed")  # at "reason"
COMPLETED = "01a25162-0218-7000-aa1a-f1e38b3a8eb6"
OPTED_OUT = "tel:+15550000004"


async def delivered(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    """The receiver's deliveries once there are `count` of them."""
    await until(lambda: len(receiver.deliveries) >= count)
    return receiver.deliveries


async def test_a_version_1_database_upgrades_and_carries_on(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    database = tmp_path / "seda.db"
    shutil.copyfile(OLD, database)
    database.chmod(0o600)
    receiver = Receiver()
    url = await receiver.start()
    try:
        # The day after: the old backoff has passed, the open responses have not expired.
        clock = Clock(datetime(2026, 12, 8, 9, 0, tzinfo=UTC))
        backend = {"type": "webhook", "url": url, "secret": SECRET, "timeout": 5}
        path = write_config(
            tmp_path, database=str(database), secret="upgrade-test", backends={"cem": backend}
        )
        client = await aiohttp_client(await create_app(load(path), clock=clock))
        version = sqlite3.connect(database).execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION

        # The six events the old Seda could not deliver arrive as it wrote them.
        old = await delivered(receiver, 6)
        assert receiver.bad_signatures == 0
        types = sorted(d["event"]["type"] for d in old)
        assert types == sorted(
            ["answer.recorded"] * 3 + ["response.completed", "response.abandoned"]
            + ["respondent.opted_out"]
        )  # fmt: skip
        for d in old:
            assert d["webhook_id"] == d["event"]["id"]
            if d["event"]["type"] == "answer.recorded":
                assert_valid_answer(d["event"]["data"])
        nine = next(d["event"]["data"] for d in old if d["event"]["data"].get("raw") == "۹")
        assert nine["value"] == 9 and nine["context"] == {"agent": "a7", "queue": "billing"}

        # The Persian response goes on at its second question, with its context.
        address, response_id = PERSIAN
        body = {"respondent": address, "text": "بله", "message_id": "after-upgrade-1"}
        resp = await client.post("/api/v1/messages", json=body)
        reply = await resp.json()
        assert resp.status == 200 and reply["response_id"] == response_id, reply
        assert reply["completed"] is True, reply
        # The detractor's reason question, then "resolved".
        address, detractor = DETRACTOR
        for n, text in enumerate(["The queue was too long", "no"]):
            body = {"respondent": address, "text": text, "message_id": f"after-upgrade-2-{n}"}
            resp = await client.post("/api/v1/messages", json=body)
            reply = await resp.json()
            assert resp.status == 200 and reply["response_id"] == detractor, reply
        assert reply["completed"] is True, reply

        new = (await delivered(receiver, 6 + 5))[6:]
        answers = [d["event"]["data"] for d in new if d["event"]["type"] == "answer.recorded"]
        for answer in answers:
            assert_valid_answer(answer)
        assert [(a["response_id"], a["question_id"], a["value"]) for a in answers] == [
            (response_id, "resolved", True),
            (detractor, "reason", "The queue was too long"),
            (detractor, "resolved", False),
        ]
        assert answers[0]["context"] == {"agent": "a7", "queue": "billing"}
        completed = [d["event"]["data"] for d in new if d["event"]["type"] == "response.completed"]
        assert [c["response_id"] for c in completed] == [response_id, detractor]

        # The completed response reads back; the opt-out still holds.
        resp = await client.get(f"/api/v1/responses/{COMPLETED}")
        shown = await resp.json()
        assert resp.status == 200 and shown["status"] == "completed", shown
        invite = {"survey": "ticket_csat", "respondent": OPTED_OUT, "language": "en"}
        resp = await client.post("/api/v1/invitations", json=invite)
        assert resp.status == 409, await resp.text()
        assert "opted out" in (await resp.json())["error"]
    finally:
        await receiver.stop()
