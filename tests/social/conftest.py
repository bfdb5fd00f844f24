"""Fixtures for the chat channels: fake provider APIs on loopback and the real Seda app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import load
from gateway.server import create_app
from tests.conftest import write_config
from tests.social.fake_telegram import DATA, SECRET, TOKEN, FakeBotApi
from tests.social.fake_whatsapp import FakeGraphApi

Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[..., Awaitable[Any]]
TEST_FLOWS = DATA / "flows"  # surveys of the chat tests: ratings, a Korean voice survey


@pytest.fixture
async def bot_api(aiohttp_server: Any) -> FakeBotApi:
    """A fake Bot API server on a loopback port."""
    fake = FakeBotApi()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def graph_api(aiohttp_server: Any) -> FakeGraphApi:
    """A fake Graph API server on a loopback port."""
    fake = FakeGraphApi()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/") + "/v21.0"
    return fake


def telegram_spec(bot_api: FakeBotApi, **overrides: Any) -> dict[str, Any]:
    """The `channels.telegram` block for one bot named `support` on the fake Bot API."""
    bot = {"token": TOKEN, "secret": SECRET, "base_url": f"{bot_api.url}/bot",
           "base_file_url": f"{bot_api.url}/file/bot", **overrides}  # fmt: skip
    return {"enabled": True, "bots": {"support": bot}}


@pytest.fixture
def seda(tmp_path: Path, aiohttp_client: Any) -> MakeClient:
    """Start the real Seda app with extra channels enabled; returns a client to it."""

    async def make(flows: Path | None = None, extra: Any = None, **channels: Any) -> Client:
        """`flows`: another survey folder; `extra`: more top-level config (backends, speech)."""
        more = {"flows": str(flows)} if flows is not None else {}
        more.update(extra or {})
        config = write_config(tmp_path, channels={"api": {"enabled": True}, **channels}, **more)
        app = await create_app(load(config))
        client: Client = await aiohttp_client(app)
        return client

    return make
