"""Reminders, quiet hours and notices on SMS, through the real app and a fake Twilio API.

The app runs on a clock the test moves; the reminder sweep is called directly (the server
runs the same call every 30 seconds).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from gateway.config import ConfigError, load
from gateway.server import GATEWAY, create_app
from sms.twilio import signature
from tests.answer_schema import assert_valid_answer
from tests.conftest import Clock, write_config
from tests.sms.helpers import PUBLIC, TWILIO_TOKEN, FakeProviders, answers, payload, twilio_line

RESPONDENT = "tel:+989121234567"  # Iran: Asia/Tehran, UTC+03:30 all year
QUIET = {"start": "21:00", "end": "08:00", "timezone": "UTC", "channels": ["sms"]}
REMINDER = "یادآوری: نظر شما برای ما مهم است."


def tehran(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A moment given in Tehran's local time (UTC+03:30), as aware UTC."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=3, minutes=30)


async def start(
    tmp_path: Path,
    aiohttp_client: Any,
    aiohttp_server: Any,
    clock: Clock,
    line_options: dict[str, Any] | None = None,
    **extra: Any,
) -> tuple[Any, FakeProviders]:
    fake = FakeProviders()
    server = await aiohttp_server(fake.app())
    line = twilio_line(base_url=str(server.make_url("")).rstrip("/"), **(line_options or {}))
    channels = {"api": {"enabled": True}, "sms": {"enabled": True, "lines": {"main": line}}}
    path = write_config(tmp_path, channels=channels, **extra)
    client = await aiohttp_client(await create_app(load(path), clock=clock))
    return client, fake


async def reply(client: Any, text: str, sid: str) -> str | None:
    """A signed Twilio webhook from the respondent; the TwiML <Message> text, if any."""
    request = payload("twilio/inbound_fa.http").with_form(Body=text, MessageSid=sid)
    headers = dict(request.headers)
    headers["X-Twilio-Signature"] = signature(PUBLIC + request.path, request.form(), TWILIO_TOKEN)
    resp = await client.post(request.path, data=request.body, headers=headers)
    assert resp.status == 200, await resp.text()
    found = ElementTree.fromstring(await resp.text()).find("Message")
    return found.text if found is not None else None


async def invite(client: Any, **body: Any) -> dict[str, Any]:
    data = {"survey": "post_call_nps", "respondent": RESPONDENT, "language": "fa",
            "channel": "sms", **body}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=data)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def test_persian_survey_with_a_reminder_and_an_opt_out(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(10))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    gateway = client.app[GATEWAY]
    invited = await invite(client, context={"agent": "42"})
    assert "send_at" not in invited  # 10:00 in Tehran: not held back
    await fake.wait(1)

    assert (await reply(client, "۳", "SM" + "1" * 32) or "").startswith("متأسفیم")
    clock.now += timedelta(hours=3, minutes=59)
    assert await gateway.remind_due() == 0  # 4h after the last reply, not before

    clock.now += timedelta(minutes=2)
    assert await gateway.remind_due() == 1
    sent = await fake.wait(2)
    body = sent[1]["body"]["Body"]
    assert body.startswith(REMINDER) and "متأسفیم" in body  # then the open question again
    assert body.endswith("لغو ۱۱") and sent[1]["body"]["To"] == "+989121234567"

    clock.now += timedelta(hours=5)
    assert await gateway.remind_due() == 0  # one reminder per response
    assert (await reply(client, "صف طولانی بود", "SM" + "2" * 32) or "").startswith("آیا مشکل")
    assert (await reply(client, "خیر", "SM" + "3" * 32) or "").startswith("از اینکه وقت")

    state = await answers(client, invited["response_id"])
    assert state["status"] == "completed"
    assert {a["question_id"]: a["value"] for a in state["answers"]} == {
        "nps": 3, "reason": "صف طولانی بود", "resolved": False}  # fmt: skip
    for answer in state["answers"]:
        assert_valid_answer(answer)
        assert answer["context"] == {"agent": "42"}

    assert await reply(client, "۱۱", "SM" + "4" * 32)  # the opt-out notice comes back
    again = await client.post("/api/v1/invitations", json={
        "survey": "post_call_nps", "respondent": RESPONDENT, "channel": "sms"})  # fmt: skip
    assert again.status == 409
    assert len(fake.sent) == 2  # the invitation and the reminder; the rest went by TwiML


async def test_quiet_hours_hold_an_invitation_until_morning(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(23))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    invited = await invite(client)
    morning = tehran(8, day=3)
    assert datetime.fromisoformat(invited["send_at"]) == morning
    with pytest.raises(AssertionError):
        await fake.wait(1)  # nothing goes out in the night

    clock.now = morning + timedelta(seconds=1)
    sent = await fake.wait(1)  # the forwarder sends it once its time has come
    assert sent[0]["body"]["Body"].startswith("از صفر تا ده")
    session = await client.app[GATEWAY].store.session(invited["response_id"])
    assert session is not None and session.expires_at == morning + timedelta(hours=24)
    assert session.remind_at == morning + timedelta(hours=4)


async def test_an_opt_out_at_night_is_confirmed_at_once_and_the_held_invitation_dropped(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    # The line answers through the send API (no TwiML), so the notice goes through the outbox,
    # where the invitation held back until morning waits on the same response.
    clock = Clock(tehran(23))
    options = {"reply": "api"}
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, clock, options, quiet_hours=QUIET
    )
    invited = await invite(client)
    assert "send_at" in invited
    clock.now = tehran(23, 5)
    assert await reply(client, "۱۱", "SM" + "5" * 32) is None  # nothing inline: the API sends
    (notice,) = await fake.wait(1)  # at once: the respondent is awake and asked
    assert notice["body"]["Body"] != "" and not notice["body"]["Body"].startswith("از صفر تا ده")
    state = await answers(client, invited["response_id"])
    assert state["status"] == "abandoned"

    clock.now = tehran(8, 1, day=3)
    with pytest.raises(AssertionError):
        await fake.wait(2)  # the invitation is never sent: the respondent opted out


async def test_notices_of_respondents_without_a_survey_do_not_wait_for_each_other(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    # Opting out or in with no open survey: each notice is ordered by its own respondent, so a
    # notice the provider refuses for a while holds up no one else's (they once shared one key).
    clock = Clock(tehran(12))
    options = {"reply": "api"}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, options)
    fake.fail = [500]  # the first send fails and is retried later (the clock stands still)
    assert await reply(client, "۱۱", "SM" + "6" * 32) is None
    for text, sid in (("۱۱", "7"), ("۱۲", "8")):  # another respondent opts out, then back in
        other = payload("twilio/inbound_fa.http").with_form(
            Body=text, MessageSid="SM" + sid * 32, From="+989121111111"
        )
        headers = dict(other.headers)
        headers["X-Twilio-Signature"] = signature(PUBLIC + other.path, other.form(), TWILIO_TOKEN)
        resp = await client.post(other.path, data=other.body, headers=headers)
        assert resp.status == 200, await resp.text()
    sent = await fake.wait(2)
    assert [s["body"]["To"] for s in sent] == ["+989121111111"] * 2
    rows = await client.app[GATEWAY].store.list_outbox()
    notices = [row for row in rows if row.event_type == "outbound.sms"]
    assert len(notices) == 3 and all(row.order_key.startswith("r_") for row in notices)
    # Keyed by its respondent, the notice still waiting for its retry goes with an erasure.
    await client.app[GATEWAY].erase(RESPONDENT)
    rows = await client.app[GATEWAY].store.list_outbox(status="pending")
    assert not [row for row in rows if row.event_type == "outbound.sms"]


async def test_a_reminder_due_at_night_waits_for_morning(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(18))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    gateway = client.app[GATEWAY]
    invited = await invite(client)
    await fake.wait(1)
    clock.now = tehran(22, 30)  # due at 22:00, inside quiet hours
    assert await gateway.remind_due() == 1
    session = await gateway.store.session(invited["response_id"])
    assert session is not None and session.remind_at == tehran(8, day=3)
    with pytest.raises(AssertionError):
        await fake.wait(2)

    clock.now = tehran(8, 1, day=3)
    assert await gateway.remind_due() == 1
    assert (await fake.wait(2))[1]["body"]["Body"].startswith(REMINDER)


async def test_a_timezone_in_the_context_wins_over_the_number(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(datetime(2026, 3, 2, 23, 0, tzinfo=UTC))  # 02:30 in Tehran, 23:00 in London
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    invited = await invite(client, context={"timezone": "Europe/London"})
    assert datetime.fromisoformat(invited["send_at"]) == datetime(2026, 3, 3, 8, tzinfo=UTC)


async def test_a_timezone_that_does_not_exist_is_refused_and_changes_nothing(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A CRM's typo («Asia/Tehrn») decides when the respondent may be texted: it was passed
    over in silence and the number's zone used. Refused, naming the field; nothing sent."""
    clock = Clock(tehran(12))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    data = {"survey": "post_call_nps", "respondent": RESPONDENT, "language": "fa",
            "channel": "sms", "context": {"timezone": "Asia/Tehrn"}}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=data)
    assert resp.status == 422
    assert "context.timezone" in (await resp.json())["error"]
    assert (await client.app[GATEWAY].store.open_session("sms", RESPONDENT)) is None
    await asyncio.sleep(0.2)
    assert fake.sent == []


async def test_without_quiet_hours_nothing_waits_and_the_api_channel_gets_no_reminder(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(23))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    await invite(client)
    await fake.wait(1)
    api = await invite(client, channel="api", respondent="tel:+989121234568")
    session = await client.app[GATEWAY].store.session(api["response_id"])
    assert session is not None and session.remind_at is None


@pytest.mark.parametrize(
    ("quiet", "message"),
    [
        ({"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}, "not a time zone"),
        ({"start": "21:00", "end": "21:00"}, "start and end are the same"),
        ({"start": "21:00", "end": "08:00", "zones": {"98": "Asia/Tehran"}}, "calling code"),
        ({"start": "9pm", "end": "08:00"}, "start"),
        (
            {"start": "21:00", "end": "08:00", "channels": ["smss"]},
            "quiet_hours.channels: no channel 'smss'",
        ),
    ],
)
async def test_bad_quiet_hours_stop_the_start_with_a_clear_error(
    tmp_path: Path, quiet: dict[str, Any], message: str
) -> None:
    path = write_config(tmp_path, quiet_hours=quiet)
    with pytest.raises(ConfigError, match=message):
        await create_app(load(path))
    assert not (tmp_path / "seda.db").exists()  # refused before anything was opened


async def test_quiet_hours_on_a_channel_that_holds_nothing_are_reported(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The api channel answers in the request itself and email is not enabled: neither can be
    held back, which the operator who listed them expects; start-up says so."""
    quiet = {**QUIET, "channels": ["sms", "api", "email"]}
    await start(tmp_path, aiohttp_client, aiohttp_server, Clock(tehran(12)), quiet_hours=quiet)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("quiet hours hold")]
    assert record.levelname == "WARNING"
    assert record.fields == {"channels": ["api", "email"], "holding": ["sms"]}  # type: ignore[attr-defined]


async def test_an_invitation_and_a_reminder_the_provider_delays_into_the_night_wait_for_morning(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Quiet hours are checked when a message Seda starts goes out, not only when it is
    queued: a provider that refuses it until the window has begun must not wake anyone."""
    clock = Clock(tehran(20, 58))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    fake.fail = [503] * 3  # the invitation is refused, then retried (the clock stands still)
    invited = await invite(client)
    assert "send_at" not in invited  # queued before the window
    for _ in range(200):
        if not fake.fail:
            break
        await asyncio.sleep(0.02)
    fake.fail = [503] * 1000  # down for longer, then back within the window
    clock.now = tehran(21, 30)
    await asyncio.sleep(0.3)
    fake.fail = []
    with pytest.raises(AssertionError):
        await fake.wait(1)  # back at 21:30, but the respondent's night has begun
    clock.now = tehran(8, day=3)
    (sent,) = await fake.wait(1)
    assert sent["body"]["Body"].startswith("از صفر تا ده")

    # The reminder (due 12:00) meets an outage too, and the provider comes back at night.
    gateway = client.app[GATEWAY]
    fake.fail = [503] * 1000
    clock.now = tehran(12, day=3)
    assert await gateway.remind_due() == 1
    await asyncio.sleep(0.3)
    clock.now = tehran(22, day=3)
    fake.fail = []
    with pytest.raises(AssertionError):
        await fake.wait(2)
    clock.now = tehran(8, 1, day=4)
    sent_then = await fake.wait(2)
    assert sent_then[1]["body"]["Body"].startswith(REMINDER)
    await asyncio.sleep(0.3)
    assert len(fake.sent) == 2  # each once
    assert (await answers(client, invited["response_id"]))["status"] == "open"


async def test_invitations_held_at_night_go_once_each_in_the_morning_after_a_restart(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(23))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    numbers = [f"+98912555000{n}" for n in range(3)]
    for number in numbers:
        assert "send_at" in await invite(client, respondent=f"tel:{number}")
    await client.close()  # Seda stops in the middle of the night
    clock.now = tehran(2, day=3)
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock, quiet_hours=QUIET)
    with pytest.raises(AssertionError):
        await fake.wait(1)
    clock.now = tehran(8, day=3)
    sent = await fake.wait(3)
    await asyncio.sleep(0.3)
    assert sorted(s["body"]["To"] for s in fake.sent) == numbers  # each once
    assert all(s["body"]["Body"].startswith("از صفر تا ده") for s in sent)


async def test_a_reminder_survives_a_restart_and_is_sent_once(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(10))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    await invite(client)
    opted = await invite(client, respondent="tel:+989121234599")
    await fake.wait(2)
    await client.close()
    clock.now = tehran(14, 1)  # both due at 14:00, while Seda was down
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    gateway = client.app[GATEWAY]
    other = payload("twilio/inbound_fa.http").with_form(
        Body="لغو", MessageSid="SM" + "9" * 32, From="+989121234599"
    )
    headers = dict(other.headers)
    headers["X-Twilio-Signature"] = signature(PUBLIC + other.path, other.form(), TWILIO_TOKEN)
    assert (await client.post(other.path, data=other.body, headers=headers)).status == 200
    assert (await answers(client, opted["response_id"]))["status"] == "abandoned"
    assert await gateway.remind_due() == 1  # the one who opted out gets none
    (sent,) = await fake.wait(1)
    assert sent["body"]["To"] == "+989121234567" and sent["body"]["Body"].startswith(REMINDER)
    await client.close()
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    clock.now = tehran(20)
    assert await client.app[GATEWAY].remind_due() == 0  # not again after another restart
    with pytest.raises(AssertionError):
        await fake.wait(1)


async def test_no_reminder_after_expiry(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = Clock(tehran(10))
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, clock)
    invited = await invite(client)
    await fake.wait(1)
    clock.now = tehran(10, 1, day=3)  # no sweep ran: reminder and expiry are both due
    gateway = client.app[GATEWAY]
    assert await gateway.remind_due() == 1  # looked at, found expired, cleared
    assert await gateway.remind_due() == 0
    with pytest.raises(AssertionError):
        await fake.wait(2)
    assert await gateway.expire_due() == 1
    assert (await answers(client, invited["response_id"]))["status"] == "abandoned"
