"""One respondent, two spellings of their address: an opt-out and an erasure reach both.

Through the real app (api channel), store and jsonl backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import load
from gateway.server import create_app
from tests.conftest import write_config


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> TestClient:  # type: ignore[type-arg]
    app = await create_app(load(write_config(tmp_path)))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def invite(client: TestClient, respondent: str) -> Any:  # type: ignore[type-arg]
    body = {"survey": "post_call_nps", "respondent": respondent, "language": "en"}
    return await client.post("/api/v1/invitations", json=body)


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("mailto:Leila.Rezaei@Example.COM", "mailto:leila.rezaei@example.com"),
        ("mailto:leila.rezaei@example.com", "mailto:LEILA.Rezaei@example.com"),
        ("tel:+989121234567", "tel:00989121234567"),
        ("tel:989121234567", "tel:+989121234567"),
    ],
)
async def test_an_opt_out_holds_for_another_spelling_of_the_address(
    client: TestClient,  # type: ignore[type-arg]
    first: str,
    again: str,
) -> None:
    """A CRM that writes the address otherwise the next time must not invite someone who
    said stop."""
    assert (await invite(client, first)).status == 201
    body = {"respondent": first, "text": "STOP", "message_id": "m1"}
    resp = await client.post("/api/v1/messages", json=body)
    assert resp.status == 200 and (await resp.json())["status"] == "accepted"
    refused = await invite(client, again)
    assert refused.status == 409, await refused.text()
    # START from the other spelling opts them back in, under both.
    body = {"respondent": again, "text": "START", "message_id": "m2"}
    assert (await client.post("/api/v1/messages", json=body)).status == 200
    assert (await invite(client, first)).status == 201


async def test_an_erasure_finds_an_email_address_written_in_another_case(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert (await invite(client, "mailto:Leila.Rezaei@Example.COM")).status == 201
    body = {"respondent": "mailto:leila.rezaei@example.com"}
    resp = await client.post("/api/v1/respondents/erase", json=body)
    assert resp.status == 200, await resp.text()
    erased = await resp.json()
    assert erased["responses"] == 1
    assert erased["addresses"] == ["mailto:Leila.Rezaei@Example.COM"]
