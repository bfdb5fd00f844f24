"""Whole conversations over SMS through the real app, on a clock the test moves: what reaches
the respondent when a message waits in the outbox (quiet hours, a provider outage) while the
conversation moves on. One row per case: a script of steps and the texts that must go out."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load
from gateway.server import GATEWAY, create_app
from sms.twilio import signature
from tests.conftest import Clock, read_jsonl, write_config
from tests.sms.helpers import DATA, PUBLIC, TWILIO_TOKEN, FakeProviders, payload, twilio_line

RESPONDENT = "tel:+989121234567"  # Iran: Asia/Tehran, UTC+03:30 all year
QUIET = {"start": "21:00", "end": "08:00", "timezone": "UTC", "channels": ["sms"]}
NPS = "از صفر تا ده"  # post_call_nps, first question
CSAT = "سلام، درخواست پشتیبانی"  # ticket_csat, intro and first question
REMINDER = "یادآوری"
OPTED_OUT = "دیگر نظرسنجی"
OPTED_IN = "دریافت نظرسنجی‌ها دوباره فعال شد"
NPS_AGAIN = "لطفاً عددی بین صفر تا ده"  # post_call_nps, the nps question's invalid-reply prompt


def tehran(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A moment given in Tehran's local time (UTC+03:30), as aware UTC."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=3, minutes=30)


def kavenegar_item(message_id: int, text: str) -> dict[str, Any]:
    """A Kavenegar inbox entry from the recorded answer, from the respondent."""
    entry = json.loads((DATA / "kavenegar/receive.json").read_text("utf-8"))["entries"][0]
    return {**entry, "messageid": message_id, "message": text, "sender": "09121234567"}


async def start(
    tmp_path: Path,
    aiohttp_client: Any,
    aiohttp_server: Any,
    provider: str,
    clock: Clock,
    **line_extra: Any,
) -> tuple[Any, FakeProviders]:
    fake = FakeProviders()
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    if provider == "twilio":
        line = twilio_line(base_url=base, **line_extra)
    else:
        line = {"provider": "kavenegar", "number": "10004346", "api_key": "kav-test-key",
                "poll_interval": 0.05, "spool": str(tmp_path / "kav.spool"), "base_url": base}  # fmt: skip
    channels = {"api": {"enabled": True}, "sms": {"enabled": True, "lines": {"main": line}}}
    path = write_config(tmp_path, channels=channels, quiet_hours=QUIET)
    client = await aiohttp_client(await create_app(load(path), clock=clock))
    return client, fake


async def reply(client: Any, fake: FakeProviders, provider: str, text: str, n: int) -> str:
    """The respondent's SMS: a signed Twilio webhook, or a message in Kavenegar's inbox."""
    if provider == "kavenegar":
        fake.inbox.append(kavenegar_item(26901000 + n, text))
        for _ in range(200):
            if not fake.inbox:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # fetched; now stored
        return ""
    request = payload("twilio/inbound_fa.http").with_form(Body=text, MessageSid=f"SM{n:032d}")
    headers = dict(request.headers)
    headers["X-Twilio-Signature"] = signature(PUBLIC + request.path, request.form(), TWILIO_TOKEN)
    resp = await client.post(request.path, data=request.body, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.text()  # the TwiML answer


def texts(fake: FakeProviders, provider: str) -> list[str]:
    """What the provider's send API was asked to send, in order."""
    key = "Body" if provider == "twilio" else "message"
    return [str(record["body"][key]) for record in fake.sent]


# label, provider, script (step, argument), the starts of the texts sent (in order)
CASES = [
    ("opted out while the invitation waits for the morning", "twilio",
     [("at", tehran(23)), ("invite", "post_call_nps"), ("reply", "STOP"),
      ("at", tehran(8, 1, day=3))], []),
    ("opted out with «لغو۱۱» while the invitation waits, polled line", "kavenegar",
     [("at", tehran(23)), ("invite", "post_call_nps"), ("reply", "لغو۱۱"),
      ("at", tehran(8, 1, day=3))], [OPTED_OUT]),
    ("replaced by a second invitation while the first waits for the morning", "twilio",
     [("at", tehran(23)), ("invite", "post_call_nps"), ("invite", "ticket_csat"),
      ("at", tehran(8, 1, day=3))], [CSAT]),
    ("a reminder held by a provider outage, then the respondent answers", "twilio",
     [("at", tehran(10)), ("invite", "post_call_nps"), ("sent", 1), ("fail", 2),
      ("at", tehran(14, 1)), ("remind", 1), ("reply", "۹"), ("at", tehran(14, 10))], [NPS]),
    ("12 while a survey is open is a reply (out of range here), not an opt-in", "kavenegar",
     [("at", tehran(10)), ("invite", "post_call_nps"), ("sent", 1), ("reply", "۱۲")],
     [NPS, NPS_AGAIN]),
    ("12 after opting out opts back in", "kavenegar",
     [("at", tehran(10)), ("invite", "post_call_nps"), ("sent", 1), ("reply", "لغو۱۱"),
      ("sent", 2), ("reply", "12")], [NPS, OPTED_OUT, OPTED_IN]),
    ("a reminder delayed by an outage still goes when nothing was answered", "twilio",
     [("at", tehran(10)), ("invite", "post_call_nps"), ("sent", 1), ("fail", 2),
      ("at", tehran(14, 1)), ("remind", 1), ("at", tehran(14, 10))], [NPS, REMINDER]),
]  # fmt: skip


@pytest.mark.parametrize(("label", "provider", "script", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
async def test_a_waiting_message_is_not_sent_once_the_conversation_moved_on(
    label: str, provider: str, script: list[tuple[str, Any]], expected: list[str],
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
) -> None:  # fmt: skip
    clock = Clock(tehran(12))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, provider, clock)
    gateway = client.app[GATEWAY]
    for n, (step, argument) in enumerate(script):
        if step == "at":
            clock.now = argument
        elif step == "invite":
            body = {"survey": argument, "respondent": RESPONDENT, "language": "fa",
                    "channel": "sms"}  # fmt: skip
            resp = await client.post("/api/v1/invitations", json=body)
            assert resp.status == 201, await resp.text()
        elif step == "reply":
            await reply(client, fake, provider, argument, n)
        elif step == "sent":
            await fake.wait(argument)
        elif step == "fail":
            fake.fail.extend([503] * argument)
        elif step == "remind":
            assert await gateway.remind_due() == argument
    for _ in range(40):  # the forwarder's retries and held messages come due as time moves
        clock.now += timedelta(seconds=30)
        await asyncio.sleep(0.05)
    sent = texts(fake, provider)
    assert len(sent) == len(expected), sent
    for text, start_ in zip(sent, expected, strict=True):
        assert text.startswith(start_), (text, start_)


async def test_a_message_to_no_survey_starts_the_lines_default_survey(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(12))
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, "twilio", clock, default_survey="post_call_nps"
    )
    # "سلام" reaches no open survey: it answers nothing and starts the survey, in Persian; a
    # retry of the same webhook (the same MessageSid) does not start it again.
    for _ in range(2):
        twiml = await reply(client, fake, "twilio", "سلام", 1)
        assert "<Message>" not in twiml  # the prompt goes through the send API, once
    await fake.wait(1)
    await asyncio.sleep(0.3)
    assert [text[: len(NPS)] for text in texts(fake, "twilio")] == [NPS]
    # The next message answers the survey's first question, and the next question comes inline.
    twiml = await reply(client, fake, "twilio", "۹", 2)
    assert "<Message>" in twiml and NPS not in twiml
    for _ in range(100):  # the forwarder writes the events to the jsonl backend
        events = read_jsonl(tmp_path / "answers.jsonl")
        if any(e["type"] == "answer.recorded" for e in events):
            break
        await asyncio.sleep(0.05)
    (answer,) = [e["data"] for e in events if e["type"] == "answer.recorded"]
    assert (answer["question_id"], answer["value"], answer["raw"]) == ("nps", 9, "۹")
    assert answer["context"] == {"source": "sms_unsolicited"} and answer["language"] == "fa"


async def test_a_default_survey_that_does_not_exist_stops_the_start(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    with pytest.raises(ValueError, match=r"lines\.main\.default_survey: no survey 'nope'"):
        await start(
            tmp_path, aiohttp_client, aiohttp_server, "twilio", Clock(tehran(12)),
            default_survey="nope",
        )  # fmt: skip


@pytest.mark.parametrize("swept", [False, True], ids=["before the sweep", "after the sweep"])
async def test_a_late_reply_on_a_line_with_a_default_survey_starts_it_whether_swept_or_not(
    swept: bool, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A reply after the survey expired meets no open survey, whether or not the expiry sweep
    (every 30 s) has closed the response yet: on a line with a default survey it starts it."""
    clock = Clock(tehran(12))
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, "twilio", clock, default_survey="ticket_csat"
    )
    gateway = client.app[GATEWAY]
    body = {"survey": "post_call_nps", "respondent": RESPONDENT, "language": "fa", "channel": "sms"}
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()
    await fake.wait(1)
    clock.now = tehran(13, day=3)  # post_call_nps expires after 24 h
    if swept:
        assert await gateway.expire_due() == 1
    twiml = await reply(client, fake, "twilio", "سلام", 1)
    assert "<Message>" not in twiml
    await fake.wait(2)
    await asyncio.sleep(0.3)
    assert [text[: len(CSAT)] for text in texts(fake, "twilio")[1:]] == [CSAT]
    for _ in range(100):
        events = read_jsonl(tmp_path / "answers.jsonl")
        if any(e["type"] == "response.abandoned" for e in events):
            break
        await asyncio.sleep(0.05)
    (abandoned,) = [e["data"] for e in events if e["type"] == "response.abandoned"]
    assert abandoned["survey_id"] == "post_call_nps" and abandoned["reason"] == "expired"
