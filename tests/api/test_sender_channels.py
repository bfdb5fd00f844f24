"""Channels that send their own prompts get them through the outbox, after the commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import registry
from gateway.config import load
from gateway.model import Inbound
from gateway.server import GATEWAY, create_app
from tests.api import fake_channel
from tests.conftest import read_jsonl, write_config


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = {**registry.CHANNELS, "recording": "tests.api.fake_channel:RecordingChannel"}
    monkeypatch.setattr(registry, "CHANNELS", channels)


async def wait_sent(count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        if len(fake_channel.SENT) >= count:
            return fake_channel.SENT
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(fake_channel.SENT)} of {count} prompt batches were sent")


async def test_prompts_wait_in_order_and_an_answered_question_is_not_asked_again(
    recording: None, tmp_path: Path, aiohttp_client: Any
) -> None:
    fake_channel.FAIL_NEXT[0] = 2  # the provider is down for the first two attempts
    channels = {"api": {"enabled": True}, "recording": {"enabled": True}}
    app = await create_app(load(write_config(tmp_path, channels=channels)))
    client = await aiohttp_client(app)
    resp = await client.post(
        "/api/v1/invitations",
        json={"survey": "issue_resolved", "respondent": "tel:+971501234567", "language": "ar",
              "channel": "recording", "context": {"store": "dubai-mall"}},
    )  # fmt: skip
    assert resp.status == 201, await resp.text()
    gateway = app[GATEWAY]
    reply = Inbound(
        "reply", "recording", "recording", "tel:+971501234567", gateway.clock(), text="لا",
        message_id="r1",
    )  # fmt: skip
    result = await gateway.receive(reply)
    assert result.outcome == "accepted"

    # The reply's prompts wait behind the invitation's until its retries are over; the
    # invitation's question, answered meanwhile, is then dropped, not asked again
    # (server.StillAsked), and the next question goes.
    (sent,) = await wait_sent(1)
    assert fake_channel.FAIL_NEXT[0] == 0  # both failed attempts of the invitation came first
    assert sent["type"] == "outbound.recording"
    data = sent["data"]
    assert data["address"] == "tel:+971501234567" and data["language"] == "ar"
    assert data["prompts"] == [p.to_json() for p in result.outbound]
    assert data["prompts"][0]["question_id"] != "resolved"
    await asyncio.sleep(0.2)
    assert len(fake_channel.SENT) == 1
    # CEM backends never see the prompts, only the answers and response events.
    await asyncio.sleep(0.2)
    types = {e["type"] for e in read_jsonl(tmp_path / "answers.jsonl")}
    assert types and not any(t.startswith("outbound.") for t in types)


async def test_invitation_on_a_channel_that_cannot_send(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(await create_app(load(write_config(tmp_path))))
    resp = await client.post(
        "/api/v1/invitations",
        json={"survey": "issue_resolved", "respondent": "tel:+9715", "channel": "sms"},
    )
    assert resp.status == 422
    assert "not enabled for invitations" in (await resp.json())["error"]
