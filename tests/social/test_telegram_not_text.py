"""Telegram messages that are not plain typed text (real-shaped payload files) through the real
app: captions, media, stickers, locations, contacts, polls, forwards, edits and albums.

With `reply: api` a notice goes out at once by sendMessage (the fake Bot API records it); with
`reply: inline` it rides in the webhook answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.server import GATEWAY
from tests.social.conftest import Client, MakeClient, telegram_spec
from tests.social.fake_telegram import SECRET, FakeBotApi, update

ADDRESS = "telegram:5550001"
REASON = "برنامه موقع پرداخت بسته شد، عکس صفحه را فرستادم"
NOT_READ_FA = "متأسفیم، این نوع پیام را نمی‌توانیم به‌عنوان پاسخ بخوانیم."
FORWARDED_FA = "متأسفیم، پیام بازارسال‌شده را نمی‌توانیم پاسخ شما بدانیم؛ پاسخ باید از خود شما باشد."
TAP_FA = "لطفاً پاسخ خود را بنویسید یا گزینهٔ خود را از بالا انتخاب کنید."
TYPE_FA = "لطفاً پاسخ خود را به‌صورت متن بنویسید."
NOT_TEXT = {"status": "ignored", "reason": "not text: asked for a typed answer or a button"}
FORWARDED = {"status": "ignored", "reason": "a forwarded message is not the respondent's answer"}
ACCEPTED = {"status": "accepted"}

# After /start post_call_nps (fa): the question the respondent is at ("nps", with buttons, or
# "reason", typed, after a press of 3), what they send, Seda's answer to the webhook, the notice
# they get (None: no notice) and the answers stored in the end.
CASES: dict[str, tuple[str, str, dict[str, Any], str | None, list[tuple[str, Any, str]]]] = {
    "a photo with the complaint as caption": (
        "reason", "photo_caption_reason_fa", ACCEPTED, None, [("reason", REASON, "text")]),
    "a document with a caption": (
        "reason", "document_caption_reason_fa", ACCEPTED, None, [("reason", REASON, "text")]),
    "a voice note with a caption: the caption is read, the note not heard": (
        "reason", "voice_caption_reason_fa", ACCEPTED, None, [("reason", REASON, "text")]),
    "a photo alone, on a typed question": (
        "reason", "photo_only", NOT_TEXT, f"{NOT_READ_FA}\n{TYPE_FA}", []),
    "a photo alone, on a question with buttons": (
        "nps", "photo_only", NOT_TEXT, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a sticker": ("nps", "sticker", NOT_TEXT, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a location": ("nps", "location", NOT_TEXT, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a contact": ("reason", "contact", NOT_TEXT, f"{NOT_READ_FA}\n{TYPE_FA}", []),
    "a poll": ("nps", "poll", NOT_TEXT, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a round video message": ("nps", "video_note", NOT_TEXT, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a forwarded «۹» is not the respondent's score": (
        "nps", "forwarded_text_fa", FORWARDED, f"{FORWARDED_FA}\n{TAP_FA}", []),
    "a forwarded text from a hidden sender": (
        "reason", "forwarded_hidden_fa", FORWARDED, f"{FORWARDED_FA}\n{TYPE_FA}", []),
    "an edit of an earlier message": (
        "reason", "edited_caption_fa",
        {"status": "ignored", "reason": "edited messages are not answers"}, None, []),
}  # fmt: skip


async def ok(client: Client, name: str) -> dict[str, Any]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    resp = await client.post("/telegram/support", data=update(name), headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def stored(client: Client) -> list[tuple[str, Any, str]]:
    """(question, value, input mode) of every answer of the respondent's latest response."""
    store = client.app[GATEWAY].store
    row = await store.open_session("telegram", ADDRESS)
    assert row is not None
    return [
        (a["question_id"], a["value"], a["input_mode"])
        for a in await store.answers_for(row.response_id)
    ]


async def at_question(client: Client, bot_api: FakeBotApi, question: str) -> int:
    """Start the survey and move to `question`; the number of messages sent so far."""
    await ok(client, "start_post_call_nps_fa")
    await bot_api.wait_for("sendMessage", 1)
    if question == "nps":
        return 1
    assert (await ok(client, "callback_nps_3"))["status"] == "accepted"
    await bot_api.wait_for("sendMessage", 2)
    return 2


@pytest.mark.parametrize(
    ("question", "name", "expected", "notice", "answers"), CASES.values(), ids=CASES.keys()
)
async def test_what_a_respondent_sends_besides_text(
    seda: MakeClient,
    bot_api: FakeBotApi,
    question: str,
    name: str,
    expected: dict[str, Any],
    notice: str | None,
    answers: list[tuple[str, Any, str]],
) -> None:
    """Before, a caption was dropped and anything but text or a voice note got silence, the
    respondent left waiting; a forwarded «۹» was recorded as their NPS."""
    client = await seda(telegram=telegram_spec(bot_api, reply="api"))
    sent = await at_question(client, bot_api, question)
    moves = bool(answers)  # an answer: the next question is sent
    prior = [("nps", 3, "button")] if question == "reason" else []
    if name == "edited_caption_fa":  # the photo first, then its caption edited
        assert await ok(client, "photo_caption_reason_fa") == ACCEPTED
        prior.append(("reason", REASON, "text"))
        sent = len(await bot_api.wait_for("sendMessage", sent + 1))
    assert await ok(client, name) == expected
    assert await stored(client) == prior + answers
    if moves:
        await bot_api.wait_for("sendMessage", sent + 1)
    elif notice is not None:
        told = (await bot_api.wait_for("sendMessage", sent + 1))[sent]
        assert (told["chat_id"], told["text"]) == ("5550001", notice)
        assert "reply_markup" not in told
    await asyncio.sleep(0.2)
    assert len(bot_api.sent("sendMessage")) == sent + (1 if moves or notice else 0)
    assert bot_api.sent("getFile") == []  # no attachment is fetched, a captioned voice note neither


async def test_the_notice_rides_in_the_webhook_answer(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    client = await seda(telegram=telegram_spec(bot_api))  # reply: inline, the default
    await at_question(client, bot_api, "nps")
    assert await ok(client, "sticker") == {
        "method": "sendMessage",
        "chat_id": 5550001,
        "text": f"{NOT_READ_FA}\n{TAP_FA}",
    }
    await asyncio.sleep(0.2)
    assert len(bot_api.sent("sendMessage")) == 1  # the question only: Telegram sends the notice


async def test_an_album_is_one_reply(seda: MakeClient, bot_api: FakeBotApi) -> None:
    """Three screenshots with one caption come as three messages of one media group: the
    caption is the answer, the other two bring no notice."""
    client = await seda(telegram=telegram_spec(bot_api, reply="api"))
    await at_question(client, bot_api, "reason")
    assert await ok(client, "album_caption_reason_fa") == ACCEPTED
    rest = {"status": "ignored", "reason": "the rest of an album already answered"}
    assert await ok(client, "album_second") == rest
    assert await ok(client, "album_third") == rest
    assert await stored(client) == [("nps", 3, "button"), ("reason", REASON, "text")]
    await bot_api.wait_for("sendMessage", 3)  # the "resolved?" question
    await asyncio.sleep(0.2)
    assert len(bot_api.sent("sendMessage")) == 3


async def test_one_notice_for_a_burst(seda: MakeClient, bot_api: FakeBotApi) -> None:
    """A sticker, a location and a photo in a row: one notice, not three."""
    client = await seda(telegram=telegram_spec(bot_api, reply="api"))
    await at_question(client, bot_api, "nps")
    for name in ("sticker", "location", "photo_only"):
        assert await ok(client, name) == NOT_TEXT
    await bot_api.wait_for("sendMessage", 2)
    await asyncio.sleep(0.2)
    assert len(bot_api.sent("sendMessage")) == 2


async def test_a_voice_note_when_voice_is_off_gets_the_notice(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    """Before, it was ignored in silence ("voice notes are turned off")."""
    client = await seda(
        telegram={**telegram_spec(bot_api, reply="api"), "voice": {"enabled": False}}
    )
    await at_question(client, bot_api, "nps")
    assert await ok(client, "voice_message") == NOT_TEXT
    told = (await bot_api.wait_for("sendMessage", 2))[1]
    assert told["text"] == f"{NOT_READ_FA}\n{TAP_FA}"
    assert bot_api.sent("getFile") == []


async def test_without_an_open_survey_nothing_is_said(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    client = await seda(telegram=telegram_spec(bot_api, reply="api"))
    for name in ("sticker", "photo_only", "forwarded_text_fa"):
        got = await ok(client, name)
        assert got["status"] == "ignored" and got["reason"] == "no open survey for this respondent"
    await asyncio.sleep(0.2)
    assert bot_api.sent("sendMessage") == []
