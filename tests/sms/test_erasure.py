"""Erasure of an SMS respondent: every spelling of the number, and parts of a long SMS on disk.

Signed Vonage webhooks and API calls through the real app and store; the database is read
back with sqlite3 to check that nothing of the number is left.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway.server import GATEWAY
from tests.conftest import read_jsonl
from tests.sms.helpers import invite, start
from tests.sms.test_providers import RESPONDENT
from tests.sms.test_vonage_parts import PARTS, part, post, reason_asked, single, vonage

DIGITS = "989121234567"
OTHER = "tel:+989120000002"


def held_anywhere(db: Path, digits: str) -> list[str]:
    """Every row of the database that still names the number, by table."""
    national = "0" + digits[2:]
    found = []
    with sqlite3.connect(db) as conn:
        for table in ("sessions", "answers", "inbound_ids", "outbox", "deliveries"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                text = " ".join(str(v) for v in row)
                if digits in text or national in text:
                    found.append(table)
    return found


async def test_an_erasure_reaches_every_spelling_of_the_number(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """sms stores tel:+98..., the api channel keeps tel:0912... and tel:0098... as sent: an
    operator who erases the number as Vonage wrote it (98912..., no plus) erases all three."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, vonage(country="98"))
    by_sms = (await invite(client, RESPONDENT, line="vonage1"))["response_id"]
    await post(client, single("۳", "0B00000000000001"))  # from msisdn 989121234567
    await fake.wait(2)
    by_api = []
    for spelling in ("tel:09121234567", "tel:00989121234567"):
        body = {"survey": "post_call_nps", "respondent": spelling, "language": "fa"}
        resp = await client.post("/api/v1/invitations", json=body)
        assert resp.status == 201, await resp.text()
        by_api.append((await resp.json())["response_id"])
    kept = (await invite(client, OTHER, line="vonage1"))["response_id"]
    db = tmp_path / "seda.db"
    assert held_anywhere(db, DIGITS)

    resp = await client.post("/api/v1/respondents/erase", json={"respondent": f"tel:{DIGITS}"})
    assert resp.status == 200, await resp.text()
    erased = await resp.json()
    assert (erased["responses"], erased["answers"]) == (3, 1)
    assert sorted(erased["addresses"]) == sorted(
        ["tel:+989121234567", "tel:09121234567", "tel:00989121234567"]
    )
    assert "warning" not in erased
    assert held_anywhere(db, DIGITS) == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT response_id FROM sessions").fetchall() == [(kept,)]

    # The backends hear of each pseudonym that held responses, with that one's responses.
    for _ in range(100):
        told = [
            e for e in read_jsonl(tmp_path / "answers.jsonl") if e["type"] == "respondent.erased"
        ]
        if len(told) >= 3:
            break
        await asyncio.sleep(0.02)
    assert sorted(r for e in told for r in e["data"]["responses"]) == sorted([by_sms, *by_api])
    assert len({e["data"]["respondent"]["id"] for e in told}) == 3
    assert DIGITS[2:] not in json.dumps(told)


async def test_a_national_number_without_a_known_country_is_erased_as_written_with_a_warning(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, vonage())
    resp = await client.post("/api/v1/respondents/erase", json={"respondent": "tel:09121234567"})
    assert resp.status == 200, await resp.text()
    erased = await resp.json()
    assert erased["responses"] == 0
    assert (
        "tel:09121234567 is a national number and no sms line names its country"
        in (erased["warning"])
    )


async def test_an_erasure_drops_the_parts_of_a_long_sms_still_held(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """The first part of a long reason is held on disk, waiting for the second: the erasure
    deletes it, and it is not recorded as a message once concat_timeout has passed."""
    short = {"concat_timeout": 0.4}
    client, _, _ = await reason_asked(tmp_path, aiohttp_client, aiohttp_server, **short)
    await post(client, part(1))
    spool = Path(client.app[GATEWAY].store.folder) / "spool" / "sms-vonage1.parts"
    assert len(list(spool.glob("*.part"))) == 1

    resp = await client.post("/api/v1/respondents/erase", json={"respondent": RESPONDENT})
    assert resp.status == 200, await resp.text()
    erased = await resp.json()
    assert (erased["responses"], erased["files"]) == (1, 1)
    assert list(spool.glob("*.part")) == []
    assert not any(PARTS[0] in p.read_text("utf-8") for p in spool.iterdir())
    await asyncio.sleep(1.0)  # past concat_timeout and a sweep: nothing comes back
    assert held_anywhere(tmp_path / "seda.db", DIGITS) == []
