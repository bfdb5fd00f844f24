"""Telegram updates (real-shaped payload files) through the real app, against a fake Bot API.

These run with `reply: api`: every prompt goes out through the outbox as sendMessage calls
(test_telegram_inline.py has the webhook answers of the default, `reply: inline`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load
from gateway.server import GATEWAY, create_app
from tests.answer_schema import assert_valid_answer
from tests.conftest import Clock, read_jsonl, write_config
from tests.social.conftest import TEST_FLOWS, Client, MakeClient, telegram_spec
from tests.social.fake_telegram import SECRET, TOKEN, FakeBotApi, update

HEADER = "X-Telegram-Bot-Api-Secret-Token"
ADDRESS = "telegram:5550001"
NPS_FA = "از صفر تا ده، چقدر احتمال دارد ما را به دوستان یا همکارانتان پیشنهاد کنید؟"


async def post(client: Client, name: str, secret: str | None = SECRET, bot: str = "support") -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[HEADER] = secret
    resp = await client.post(f"/telegram/{bot}", data=update(name), headers=headers)
    return resp


async def ok(client: Client, name: str) -> dict[str, Any]:
    resp = await post(client, name)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def answers(client: Client, tmp_path: Path, count: int) -> list[dict[str, Any]]:
    """The answer.recorded events in the jsonl backend (the forwarder writes them)."""
    for _ in range(250):
        found = [
            e["data"]
            for e in read_jsonl(tmp_path / "answers.jsonl")
            if e["type"] == "answer.recorded"
        ]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(found)} of {count} answers arrived")


async def stored_answers(client: Client) -> int:
    store = client.app[GATEWAY].store
    row = await store.open_session("telegram", ADDRESS)
    return 0 if row is None else len(await store.answers_for(row.response_id))


@pytest.fixture
async def client(seda: MakeClient, bot_api: FakeBotApi) -> Client:
    return await seda(telegram=telegram_spec(bot_api, reply="api"))  # type: ignore[no-any-return]


async def test_persian_nps_by_buttons_and_text(
    client: Client, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    assert await ok(client, "start_post_call_nps_fa") == {
        "status": "accepted",
        "reason": "survey started",
    }
    (first,) = await bot_api.wait_for("sendMessage", 1)
    assert first["chat_id"] == "5550001" and first["text"] == NPS_FA
    rows = first["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in row] for row in rows] == [
        ["0", "1", "2", "3", "4", "5"],
        ["6", "7", "8", "9", "10"],
    ]
    assert [b["text"] for b in rows[1]] == ["۶", "۷", "۸", "۹", "۱۰"]

    assert (await ok(client, "callback_nps_3"))["status"] == "accepted"  # a detractor: asked why
    reason_prompt = (await bot_api.wait_for("sendMessage", 2))[1]
    assert "reply_markup" not in reason_prompt  # a text question has no buttons
    await ok(client, "text_reason_fa")
    resolved_prompt = (await bot_api.wait_for("sendMessage", 3))[2]
    assert resolved_prompt["reply_markup"] == {"inline_keyboard": [[
        {"text": "بله", "callback_data": "yes"}, {"text": "خیر", "callback_data": "no"}]]}  # fmt: skip
    await ok(client, "callback_resolved_yes")
    closing = (await bot_api.wait_for("sendMessage", 4))[3]
    assert closing["text"].startswith("از اینکه وقت گذاشتید")

    # Every button press was answered, so no spinner keeps turning in the respondent's app.
    assert [q["callback_query_id"] for q in bot_api.sent("answerCallbackQuery")] == [
        "4382bfdwdsb323b2d9", "4382bfdwdsb323b2e1"]  # fmt: skip
    nps, reason, resolved = await answers(client, tmp_path, 3)
    for answer in (nps, reason, resolved):
        assert_valid_answer(answer)
        assert answer["channel"] == "telegram" and answer["provider"] == "support"
        assert answer["respondent"]["addresses"] == [ADDRESS]
        assert answer["context"] == {"source": "telegram_deep_link"}
        assert answer["language"] == "fa"
    assert (nps["question_id"], nps["value"], nps["raw"], nps["input_mode"]) == (
        "nps",
        3,
        "3",
        "button",
    )
    assert nps["message_id"] == "support:900000002"
    assert (reason["question_id"], reason["input_mode"]) == ("reason", "text")
    assert reason["value"] == "صف انتظار خیلی طولانی بود و کسی جواب نداد"
    assert (resolved["question_id"], resolved["value"], resolved["input_mode"]) == (
        "resolved",
        True,
        "button",
    )

    resp = await client.get(f"/api/v1/responses/{nps['response_id']}")
    state = await resp.json()
    assert state["status"] == "completed" and len(state["answers"]) == 3


async def test_persian_words_and_digits_typed_as_text(
    client: Client, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    await ok(client, "start_post_call_nps")  # no language in the link: the app's (fa) is used
    await ok(client, "text_nps_nine_fa")  # «۹»: a promoter, so straight to "resolved"
    await ok(client, "text_resolved_no_fa")  # «خیر»
    nps, resolved = await answers(client, tmp_path, 2)
    assert (nps["value"], nps["raw"], nps["input_mode"], nps["language"]) == (9, "۹", "text", "fa")
    assert (resolved["value"], resolved["raw"], resolved["input_mode"]) == (False, "خیر", "text")


async def test_a_repeated_update_id_gives_one_answer(client: Client, bot_api: FakeBotApi) -> None:
    await ok(client, "start_post_call_nps_fa")
    await ok(client, "start_post_call_nps_fa")  # the deep link redelivered: still one response
    first = await ok(client, "callback_nps_3")
    again = await ok(client, "callback_nps_3")
    assert first["status"] == again["status"] == "accepted"
    assert await stored_answers(client) == 1
    await bot_api.wait_for("sendMessage", 2)
    await asyncio.sleep(0.2)
    assert len(bot_api.sent("sendMessage")) == 2  # one NPS prompt, one "why?" prompt


async def test_an_edited_message_is_no_answer(client: Client, bot_api: FakeBotApi) -> None:
    await ok(client, "start_post_call_nps_fa")
    assert await ok(client, "edited_message") == {
        "status": "ignored",
        "reason": "edited messages are not answers",
    }
    assert await stored_answers(client) == 0


async def test_a_wrong_or_missing_secret_is_403_and_changes_nothing(
    client: Client, bot_api: FakeBotApi
) -> None:
    for secret in ("not-the-secret", None, SECRET + "x", ""):
        resp = await post(client, "start_post_call_nps_fa", secret=secret)
        assert resp.status == 403
    assert await client.app[GATEWAY].store.open_session("telegram", ADDRESS) is None
    await asyncio.sleep(0.1)
    assert bot_api.sent("sendMessage") == []


async def test_unknown_bot_and_malformed_bodies(client: Client) -> None:
    assert (await post(client, "start_post_call_nps_fa", bot="other")).status == 404
    for body in (
        b"{not json",
        b"[1, 2]",
        b'{"message": {}}',
        b'{"update_id": "7"}',
        b'{"update_id": 7, "message": 5}',
    ):
        resp = await client.post("/telegram/support", data=body, headers={HEADER: SECRET})
        assert resp.status == 400, body
    assert await client.app[GATEWAY].store.open_session("telegram", ADDRESS) is None


async def test_a_forged_button_is_answered_but_not_recorded(
    client: Client, bot_api: FakeBotApi
) -> None:
    await ok(client, "start_post_call_nps_fa")
    result = await ok(client, "callback_forged")  # data "99": not a button of the NPS prompt
    assert result == {
        "status": "ignored",
        "reason": "the button does not answer the current question",
    }
    assert [q["callback_query_id"] for q in bot_api.sent("answerCallbackQuery")] == [
        "4382bfdwdsb323b2f7"
    ]
    assert await stored_answers(client) == 0


async def test_groups_voice_and_unknown_surveys_are_ignored(
    client: Client, bot_api: FakeBotApi
) -> None:
    assert (await ok(client, "group_message"))["status"] == "ignored"
    assert (await ok(client, "voice_message"))["status"] == "ignored"
    unknown = await ok(client, "start_unknown_survey")
    assert unknown["status"] == "ignored" and "unknown survey" in unknown["reason"]
    await asyncio.sleep(0.1)
    assert bot_api.sent("sendMessage") == []


async def test_stop_opts_out(client: Client, bot_api: FakeBotApi, tmp_path: Path) -> None:
    await ok(client, "start_post_call_nps_fa")
    assert (await ok(client, "stop_command"))["status"] == "accepted"
    notice = (await bot_api.wait_for("sendMessage", 2))[1]
    assert "reply_markup" not in notice
    again = await ok(client, "start_post_call_nps")
    assert again["status"] == "ignored" and "opted out" in again["reason"]
    for _ in range(100):
        types = [e["type"] for e in read_jsonl(tmp_path / "answers.jsonl")]
        if "respondent.opted_out" in types:
            break
        await asyncio.sleep(0.02)
    assert "respondent.opted_out" in types and "response.abandoned" in types


async def test_the_start_button_opts_back_in_only_who_opted_out(
    client: Client, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    # Someone new pressing START: nothing to opt back into, no notice.
    first = await ok(client, "start_bare")
    assert first["status"] == "ignored" and "no survey named" in first["reason"]
    await ok(client, "start_post_call_nps_fa")
    # The first question goes out through the outbox: a STOP before it went would close the
    # response and the question would rightly never be sent (one message fewer).
    await bot_api.wait_for("sendMessage", 1)
    await ok(client, "stop_command")
    await bot_api.wait_for("sendMessage", 2)
    # The opt-out notice says "send START"; on Telegram the START button sends a bare /start.
    # (The update ids differ from the first press: Telegram never sends one twice.)
    assert (await ok(client, "start_bare_after_stop"))["status"] == "accepted"
    notice = (await bot_api.wait_for("sendMessage", 3))[2]
    assert notice["text"] == "دریافت نظرسنجی‌ها دوباره فعال شد."
    started = await ok(client, "start_post_call_nps")
    assert started["status"] == "accepted"
    for _ in range(100):
        types = [e["type"] for e in read_jsonl(tmp_path / "answers.jsonl")]
        if "respondent.opted_in" in types:
            break
        await asyncio.sleep(0.02)
    assert "respondent.opted_in" in types


async def test_logs_hold_no_token_chat_id_or_text(
    client: Client, bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for n, name in enumerate(["start_post_call_nps_fa", "callback_nps_3", "text_reason_fa"], 1):
        await ok(client, name)
        await bot_api.wait_for("sendMessage", n)  # each question reaches the chat first
    # Seda's loggers and PTB's (the SQL driver's debug log is the store's concern, not a channel's).
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("seda", "telegram", "social")]
    assert any(r.name == "seda.router" for r in ours)  # "invitation"
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in ours)
    for secret in (TOKEN, TOKEN.split(":")[1], SECRET, "5550001", "صف انتظار"):
        assert secret not in logged


# After /start rated_visit and a press of 4 stars (rated_visit: 1-5 stars, then effort 1-7):
# a press that comes next, and what it does. Each update's message is the one its button is on.
EARLIER_BUTTONS = {
    "4 stars pressed again": ("callback_stars_4_again", {
        "status": "ignored", "reason": "the button is on an earlier question's message"}, 1),
    "4 on the effort question's own keyboard": ("callback_effort_4", {"status": "accepted"}, 2),
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected", "count"), EARLIER_BUTTONS.values(), ids=EARLIER_BUTTONS.keys()
)
async def test_a_button_of_an_earlier_question_answers_nothing(
    seda: MakeClient, bot_api: FakeBotApi, name: str, expected: dict[str, Any], count: int
) -> None:
    """Before, a double tap on the stars recorded 4 stars as the effort answer too: both take 4."""
    client: Client = await seda(flows=TEST_FLOWS, telegram=telegram_spec(bot_api, reply="api"))
    await ok(client, "start_rated_visit_en")
    assert (await ok(client, "callback_stars_4"))["status"] == "accepted"
    assert await ok(client, name) == expected
    assert len(bot_api.sent("answerCallbackQuery")) == 2  # no spinner left turning
    row = await client.app[GATEWAY].store.open_session("telegram", ADDRESS)
    assert row is not None
    stored = await client.app[GATEWAY].store.answers_for(row.response_id)
    assert [(a["question_id"], a["value"]) for a in stored] == [("stars", 4), ("effort", 4)][:count]


async def test_an_invitation_held_by_quiet_hours_is_not_sent_after_stop(
    bot_api: FakeBotApi, tmp_path: Path, aiohttp_client: Any
) -> None:
    # The core's send-time check (server.StillAsked) for a chat channel: an invitation waits for
    # the morning, the respondent sends /stop in the night; then only the opt-out notice goes
    # out, never the question.
    clock = Clock(datetime(2026, 3, 2, 23, 0, tzinfo=UTC))
    quiet = {"start": "21:00", "end": "08:00", "timezone": "UTC", "channels": ["telegram"]}
    channels = {"api": {"enabled": True}, "telegram": telegram_spec(bot_api, reply="api")}
    path = write_config(tmp_path, channels=channels, quiet_hours=quiet)
    client = await aiohttp_client(await create_app(load(path), clock=clock))
    body = {"survey": "post_call_nps", "respondent": ADDRESS, "language": "fa",
            "channel": "telegram"}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201 and "send_at" in await resp.json(), await resp.text()
    assert (await ok(client, "stop_command"))["status"] == "accepted"
    clock.now = datetime(2026, 3, 3, 8, 1, tzinfo=UTC)
    for _ in range(40):  # the held invitation comes due as time moves
        clock.now += timedelta(seconds=30)
        await asyncio.sleep(0.05)
    # The notice is ordered behind the held invitation (one order per response), so it too
    # goes in the morning; the invitation itself never does.
    (notice,) = await bot_api.wait_for("sendMessage", 1)
    assert notice["text"].startswith("دیگر نظرسنجی")
    await asyncio.sleep(0.3)
    assert len(bot_api.sent("sendMessage")) == 1


async def ended_as_blocked(tmp_path: Path) -> list[dict[str, Any]]:
    """The backend's events once the response.abandoned of a blocked bot is among them."""
    for _ in range(100):
        events = read_jsonl(tmp_path / "answers.jsonl")
        ended = [e["data"] for e in events if e["type"] == "response.abandoned"]
        if ended:
            assert ended[0]["reason"] == "blocked", ended
            return events
        await asyncio.sleep(0.02)
    raise AssertionError("no response.abandoned arrived")


async def test_blocking_the_bot_ends_the_open_survey(
    client: Client, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    # A respondent answers the first question, then blocks the bot (or deletes the chat, which
    # blocks it): Telegram sends my_chat_member with "kicked". The response ends at once, with
    # the answer kept, rather than at its expiry after a reminder Telegram would refuse.
    await ok(client, "start_post_call_nps_fa")
    await ok(client, "text_nps_nine_fa")
    await bot_api.wait_for("sendMessage", 2)
    blocked = await ok(client, "my_chat_member_blocked")
    assert blocked == {"status": "accepted", "reason": "blocked"}, blocked
    events = await ended_as_blocked(tmp_path)
    assert [e["data"]["value"] for e in events if e["type"] == "answer.recorded"] == [9]
    # Nothing is open any more: a second block, an unblock and a group's removal change nothing.
    for name in ("my_chat_member_blocked_again", "my_chat_member_unblocked",
                 "my_chat_member_removed_from_group"):  # fmt: skip
        assert (await ok(client, name))["status"] == "ignored", name
    await asyncio.sleep(0.2)
    assert len(bot_api.sent("sendMessage")) == 2
    assert await client.app[GATEWAY].store.open_session("telegram", ADDRESS) is None


async def test_a_chat_that_refuses_the_question_ends_the_survey(
    client: Client, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    # No my_chat_member came (a webhook set by hand without it, or blocked while Seda was down):
    # the 403 of sendMessage ends the response the same way, and the prompt is a dead letter.
    bot_api.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    await ok(client, "start_post_call_nps_fa")
    await ended_as_blocked(tmp_path)
    store = client.app[GATEWAY].store
    assert await store.open_session("telegram", ADDRESS) is None
    assert (await store.dead_count())["channel.telegram"] == 1
