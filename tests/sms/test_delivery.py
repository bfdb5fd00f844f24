"""Sending: segment budget, provider outages retried, the send rate limit, config errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.server import GATEWAY
from sms.base import TokenBucket
from sms.channel import SmsChannel
from tests.sms.helpers import invite, start

RESPONDENT = "tel:+989121234567"


def generic_line(**changes: Any) -> dict[str, Any]:
    line = {"provider": "generic", "number": "+982191001234", "secret": "s"}
    line.update(changes)
    return line


async def test_message_above_the_segment_budget_is_refused(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    lines = {"gen1": generic_line(max_segments=1, footer="لغو ۱۱")}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    await invite(client, RESPONDENT)  # the Persian NPS prompt needs two UCS-2 parts
    store = client.app[GATEWAY].store
    for _ in range(100):
        if (await store.dead_count())["channel.sms"]:
            break
        await asyncio.sleep(0.02)
    assert (await store.dead_count())[
        "channel.sms"
    ] == 1  # not retried: no retry can make it shorter
    assert fake.sent == []


async def test_provider_outage_is_retried(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"gen1": generic_line()})
    fake.fail.extend([503, 429])
    await invite(client, RESPONDENT)
    sent = await fake.wait(1)
    assert len(sent) == 1 and sent[0]["body"]["text"].startswith("از صفر تا ده")


async def test_a_burst_of_invitations_keeps_to_the_lines_rate(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    # 12 invitations at once on a line allowed 4 messages a second: the provider must never
    # get more than 4 in any second (one more allowed for a loaded machine's jitter), and
    # every message arrives, once.
    lines = {"gen1": generic_line(rate=4)}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    respondents = [f"tel:+98912123{n:04d}" for n in range(12)]
    await asyncio.gather(*(invite(client, r) for r in respondents))
    sent = await fake.wait(12, seconds=15)
    await asyncio.sleep(0.3)
    assert sorted(r["body"]["to"] for r in sent) == sorted(r[4:] for r in respondents)
    times = sorted(r["at"] for r in sent)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 5, [round(t - times[0], 3) for t in times]
    assert times[-1] - times[0] >= 11 / 4 * 0.9  # 12 messages at 4 a second: 2.75 s at least


async def test_token_bucket_limits_the_rate() -> None:
    bucket = TokenBucket(20.0)
    started = time.monotonic()
    for _ in range(30):
        await bucket.take()
    assert time.monotonic() - started >= 1.4  # one at once, then 29 more at 20 per second


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ({"x": {"provider": "smsgate", "number": "1"}}, "provider must be one of"),
        ({"x": {"provider": "vonage", "number": "1", "reply": "webhook"}}, "reply must be api"),
        ({"x": {"provider": "twilio", "number": "1"}}, "account_sid is required"),
        ({"x": {"provider": "generic", "secret": "s"}}, "number is required"),
        ({"x": {"provider": "generic", "number": "1", "secret": "s", "rate": 0}}, "rate must be"),
        ({"x": {"provider": "smsir", "number": "3000"}}, "api_key is required for smsir"),
        ({"x": {"provider": "smsir", "number": "+98 3000", "api_key": "k"}}, "the SMS.ir line's"),
        ({"x": {"provider": "ghasedak", "number": "2100"}}, "api_key is required for ghasedak"),
        (
            {"x": {"provider": "melipayamak", "number": "5000", "username": "u"}},
            "password is required for melipayamak",
        ),
        (
            {"x": {"provider": "smsir", "number": "3000", "api_key": "k", "reply": "webhook"}},
            "reply must be api",
        ),
        (
            {"x": {"provider": "generic", "number": "1", "secret": "s", "max_segments": 0}},
            "max_segments must be a whole number",
        ),
    ],
)
def test_configuration_errors(lines: dict[str, Any], message: str) -> None:
    # Checked by the channel itself, as `seda validate` and `seda run` ask it before starting.
    found = SmsChannel.check_settings({"enabled": True, "lines": lines}, None)
    assert len(found) == 1 and message in found[0]


def test_channel_wide_max_segments_must_be_a_number() -> None:
    lines = {"x": {"provider": "generic", "number": "1", "secret": "s"}}
    found = SmsChannel.check_settings({"lines": lines, "max_segments": "2"}, None)
    assert found == ["channels.sms.max_segments must be a whole number of SMS parts"]
