"""An SMS invitation's address is checked, and written as the line's replies carry it
(tel:+E.164), before anything is stored: the reply then finds its response, and nothing is
sent to a number the operator did not mean."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.sms.helpers import answers, payload, start, twilio_line
from tests.sms.test_twilio import post

CASES = [
    # label, line changes, respondent, line asked for, status, Twilio's To, error says
    ("E.164", {}, "tel:+989121234567", None, 201, "+989121234567", None),
    ("national, line in +98", {"country": "98"}, "tel:09121234567", None, 201, "+989121234567", None),
    ("national in Persian digits", {"country": "98"}, "tel:۰۹۱۲-۱۲۳-۴۵۶۷", None, 201, "+989121234567", None),
    ("international without +", {}, "tel:989121234567", None, 201, "+989121234567", None),
    ("the line named", {}, "tel:+989121234567", "main", 201, "+989121234567", None),
    ("national, line without a country", {}, "tel:09121234567", None, 422, None, "set the line's country"),
    ("an email address", {}, "mailto:leila@example.ir", None, 422, None, "tel: address"),
    ("a line that does not exist", {}, "tel:+989121234567", "backup", 422, None, "no line 'backup'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "changes", "respondent", "line", "status", "sent_to", "says"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_an_sms_invitation_address(
    label: str, changes: dict[str, str], respondent: str, line: str | None, status: int,
    sent_to: str | None, says: str | None, tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:  # fmt: skip
    lines = {"main": twilio_line(**changes)}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    body = {"survey": "post_call_nps", "respondent": respondent, "language": "fa",
            "channel": "sms", **({"line": line} if line else {})}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == status, await resp.text()
    if says is not None:
        assert says in (await resp.json())["error"]
        await asyncio.sleep(0.3)  # what would have been sent by now
        assert fake.sent == []
        with sqlite3.connect(tmp_path / "seda.db") as db:
            assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)
            assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)
        return
    invited = await resp.json()
    sent = await fake.wait(1)
    assert sent[0]["body"]["To"] == sent_to
    # The respondent answers from their phone (From=+989121234567): the same response.
    reply = await post(client, payload("twilio/inbound_fa.http"))
    assert reply.status == 200
    state = await answers(client, invited["response_id"])
    assert [a["value"] for a in state["answers"]] == [9]
