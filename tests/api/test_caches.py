"""Seda's in-memory caches stay bounded over time, through the real app (seen in /metrics)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import load
from gateway.server import create_app
from tests.conftest import write_config

RESPONDENTS = [f"tel:+98912000000{n}" for n in range(3)]
SURVEYS_EACH = 40


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> TestClient:  # type: ignore[type-arg]
    app = await create_app(load(write_config(tmp_path)))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[type-arg]
    resp = await client.post(path, json=body)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def cache_entries(client: TestClient) -> dict[str, float]:  # type: ignore[type-arg]
    text = await (await client.get("/metrics")).text()
    found = re.findall(r'^seda_cache_entries\{cache="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {name: float(value) for name, value in found}


async def test_the_index_of_open_responses_holds_only_open_ones_however_many_surveys(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """A customer answers survey after survey: the cache of open sessions keeps one entry per
    conversation, and its index by response id must keep only the responses still open. It
    kept every response a conversation ever had (closed by an answer, or replaced by a new
    invitation) until the cache filled up with 200,000 conversations, which a company with
    fewer customers than that never reaches: it grew without bound."""
    for n in range(SURVEYS_EACH):
        for address in RESPONDENTS:
            invitation = {"survey": "post_call_nps", "respondent": address, "language": "fa"}
            if n % 4 == 3:  # left unanswered, then replaced by the next invitation
                await post(client, "/api/v1/invitations", invitation)
            await post(client, "/api/v1/invitations", invitation)
            for i, text in enumerate(("۹", "بله")):
                reply = {
                    "respondent": address,
                    "text": text,
                    "message_id": f"m{address[-1]}-{n}-{i}",
                }
                answer = await post(client, "/api/v1/messages", reply)
            assert answer["completed"] is True
    entries = await cache_entries(client)
    assert entries["sessions"] == len(RESPONDENTS)
    assert entries["open_response_ids"] == 0  # every survey is answered: none open
    await post(client, "/api/v1/invitations", invitation)
    assert (await cache_entries(client))["open_response_ids"] == 1
