"""The workers' API of the main process, called over loopback HTTP as a worker calls it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.flows.loader import load_surveys
from gateway.ids import IdFactory
from gateway.router import Gateway
from gateway.store import Store
from ivr_flows import asking
from ivr_flows.channel import IvrChannel
from tests.conftest import ROOT

FLOWS = ROOT / "tests/data/ivr/control"


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[IvrChannel]:
    """The ivr channel of a real gateway and store, its workers' API on loopback (no workers)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    clock = _now
    surveys = load_surveys(FLOWS)
    store = await Store.open(tmp_path / "seda.db", backends={}, clock=clock)
    gateway = Gateway(store, surveys, secret=b"s", clock=clock, new_id=IdFactory(clock))
    spec = {"default_survey": "ko_strict", "prompts": str(tmp_path / "prompts")}
    ivr = IvrChannel(gateway, spec)
    ivr._token = "t"
    await ivr._serve_control()
    try:
        yield ivr
    finally:
        if ivr._runner is not None:
            await ivr._runner.cleanup()
        await store.close()


def _now() -> datetime:
    return datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body, headers={"Authorization": "Bearer t"}) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def test_the_last_failed_try_ends_the_call_with_the_closing_prompt(
    channel: IvrChannel,
) -> None:
    # on_fail: end after silence: the response is abandoned, and the caller hears the
    # survey's closing words before the BYE (before, nothing: a hang-up without a word).
    base = channel.control_url + "/ivr/v1/calls"
    async with aiohttp.ClientSession() as http:
        turn = await _post(http, base, {"call": "c1", "caller": "sip:+98912@x", "called": "5000"})
        assert turn["expect"]["question_id"] == "resolved"
        for seq in (1, 2):
            turn = await _post(http, f"{base}/c1/input", {"seq": seq, "mode": "none"})
    assert turn["expect"] is None
    assert [p["kind"] for p in turn["prompts"]] == ["closing"]
    assert channel.calls == {}


async def test_an_unusable_recorded_prompt_is_an_error_at_start_up(
    channel: IvrChannel, caplog: pytest.LogCaptureFixture
) -> None:
    # ko_recorded.yaml names a missing file and a file that is not audio.
    await asking.warm(channel.prompts, channel.gateway.surveys.values())
    found = {
        (r.fields["question"], r.fields["reason"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage().startswith("recorded prompt unusable")
    }
    assert ("missing", "No such file or directory") in found
    assert {q for q, _ in found} == {"missing", "not_audio"}


async def test_the_workers_api_refuses_what_no_worker_sends(channel: IvrChannel) -> None:
    """Without the token (none, wrong, or bytes that are not UTF-8) 401; with it, a body that
    is not JSON (nested past reason too) 400; never a 500 and a traceback in the log."""
    host, port = channel.control_url.removeprefix("http://").rsplit(":", 1)
    body = b'{"call": "c1"}'
    cases = [
        (b"", body, 401),
        (b"Authorization: Bearer wrong\r\n", body, 401),
        (b"Authorization: Bearer \xff\xfe\r\n", body, 401),
        (b"Authorization: Bearer t\r\n", b"[" * 5_000, 400),
        (b"Authorization: Bearer t\r\n", b"\xff", 400),
    ]
    for header, payload, status in cases:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /ivr/v1/calls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (header, len(payload), payload)
        )
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.split(b" ", 2)[1] == str(status).encode(), (header, answer[:200])
