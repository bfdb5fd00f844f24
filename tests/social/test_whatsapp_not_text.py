"""WhatsApp messages that are not plain typed text (real-shaped, signed payload files) through
the real app, against the fake Graph API: captions, media, stickers, locations, contacts,
reactions, unsupported messages, forwards, and a respondent who changes their number."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.server import GATEWAY
from tests.conftest import read_jsonl
from tests.social.conftest import Client, MakeClient
from tests.social.fake_whatsapp import FakeGraphApi, payload, signature
from tests.social.test_whatsapp import ADDRESS, whatsapp_spec

REASON = "برنامه موقع پرداخت بسته شد، عکس صفحه را فرستادم"
NOT_READ_FA = "متأسفیم، این نوع پیام را نمی‌توانیم به‌عنوان پاسخ بخوانیم."
FORWARDED_FA = "متأسفیم، پیام بازارسال‌شده را نمی‌توانیم پاسخ شما بدانیم؛ پاسخ باید از خود شما باشد."
TAP_FA = "لطفاً پاسخ خود را بنویسید یا گزینهٔ خود را از بالا انتخاب کنید."
TYPE_FA = "لطفاً پاسخ خود را به‌صورت متن بنویسید."
NEW_ADDRESS = "whatsapp:+989351112233"
ACCEPTED = {"status": "accepted", "accepted": 1, "ignored": 0}
IGNORED = {"status": "ignored", "accepted": 0, "ignored": 1}

# After an invitation to post_call_nps (fa): the question the respondent is at ("nps", two
# lists, or "reason", typed, after 3 was tapped), what they send, Seda's answer to the webhook,
# the notice they get (None: none) and the answers stored.
CASES: dict[str, tuple[str, str, dict[str, Any], str | None, list[tuple[str, Any, str]]]] = {
    "an image with the complaint as caption": (
        "reason", "image_caption_reason_fa", ACCEPTED, None, [("reason", REASON, "text")]),
    "a document with a caption": (
        "reason", "document_caption_reason_fa", ACCEPTED, None, [("reason", REASON, "text")]),
    "a video with a caption": (
        "reason", "video_caption_reason_fa", ACCEPTED, None, [("reason", REASON, "text")]),
    "an image alone, on a typed question": (
        "reason", "image", IGNORED, f"{NOT_READ_FA}\n{TYPE_FA}", []),
    "an image alone, on a question with lists": (
        "nps", "image", IGNORED, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a sticker": ("nps", "sticker", IGNORED, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a location": ("nps", "location", IGNORED, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a contact card": ("reason", "contacts", IGNORED, f"{NOT_READ_FA}\n{TYPE_FA}", []),
    "a 👍 reaction to the question": ("nps", "reaction", IGNORED, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "a reaction taken back": ("nps", "reaction_removed", IGNORED, None, []),
    "a message type the Cloud API does not support": (
        "nps", "unsupported", IGNORED, f"{NOT_READ_FA}\n{TAP_FA}", []),
    "an edit of an earlier message (WhatsApp Business app numbers)": (
        "reason", "edit_caption_fa", IGNORED, None, []),
    "a forwarded «۹» is not the respondent's score": (
        "nps", "text_forwarded_fa", IGNORED, f"{FORWARDED_FA}\n{TAP_FA}", []),
}  # fmt: skip


async def ok(client: Client, name: str) -> dict[str, Any]:
    raw = payload(name)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature(raw)}
    resp = await client.post("/whatsapp/support", data=raw, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def invite(client: Client) -> str:
    body = {"survey": "post_call_nps", "respondent": ADDRESS, "language": "fa",
            "channel": "whatsapp"}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["response_id"])


async def stored(client: Client, response_id: str) -> list[tuple[str, Any, str]]:
    answers = await client.app[GATEWAY].store.answers_for(response_id)
    return [(a["question_id"], a["value"], a["input_mode"]) for a in answers]


@pytest.fixture
async def client(seda: MakeClient, graph_api: FakeGraphApi) -> Client:
    return await seda(whatsapp=whatsapp_spec(graph_api))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("question", "name", "expected", "notice", "answers"), CASES.values(), ids=CASES.keys()
)
async def test_what_a_respondent_sends_besides_text(
    client: Client,
    graph_api: FakeGraphApi,
    question: str,
    name: str,
    expected: dict[str, Any],
    notice: str | None,
    answers: list[tuple[str, Any, str]],
) -> None:
    """Before, a caption was dropped and an image, sticker, location, contact card, reaction
    or unsupported message got silence; a forwarded «۹» was recorded as the respondent's NPS."""
    response_id = await invite(client)
    sent = len(await graph_api.wait_for(2))  # NPS: two lists, 0-5 and 6-10
    prior: list[tuple[str, Any, str]] = []
    if question == "reason":
        assert (await ok(client, "list_reply_nps_3"))["status"] == "accepted"
        sent = len(await graph_api.wait_for(3))
        prior = [("nps", 3, "button")]
    assert await ok(client, name) == expected
    assert await stored(client, response_id) == prior + answers
    if answers:
        await graph_api.wait_for(sent + 1)  # the next question
    elif notice is not None:
        told = (await graph_api.wait_for(sent + 1))[sent]
        assert (told["to"], told["type"], told["text"]) == (
            "989121234567",
            "text",
            {"body": notice},
        )
    await asyncio.sleep(0.2)
    assert len(graph_api.messages) == sent + (1 if answers or notice else 0)
    assert graph_api.media_calls == []  # no attachment is fetched


async def test_one_notice_for_a_burst(client: Client, graph_api: FakeGraphApi) -> None:
    await invite(client)
    await graph_api.wait_for(2)
    for name in ("image", "sticker", "location"):
        assert await ok(client, name) == IGNORED
    await graph_api.wait_for(3)
    await asyncio.sleep(0.2)
    assert len(graph_api.messages) == 3


async def test_without_an_open_survey_nothing_is_said(
    client: Client, graph_api: FakeGraphApi
) -> None:
    for name in ("image", "sticker", "reaction", "unsupported", "text_forwarded_fa"):
        assert await ok(client, name) == IGNORED
    await asyncio.sleep(0.2)
    assert graph_api.messages == []


async def test_errors_in_a_message_are_logged_by_code(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await ok(client, "unsupported")
    (record,) = [r for r in caplog.records if r.getMessage() == "whatsapp message with errors"]
    assert getattr(record, "fields", {}) == {"line": "support", "codes": [131051]}
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "989121234567" not in logged


async def test_a_changed_number_carries_the_survey_over(
    client: Client, graph_api: FakeGraphApi, tmp_path: Path
) -> None:
    """Before, the response stayed open on the old number (its reminder went there) and the
    respondent's replies from the new number were ignored in silence."""
    old_id = await invite(client)
    await graph_api.wait_for(2)
    assert (await ok(client, "list_reply_nps_3"))["status"] == "accepted"
    await graph_api.wait_for(3)
    assert await ok(client, "system_changed_number") == ACCEPTED
    store = client.app[GATEWAY].store
    assert await store.open_session("whatsapp", ADDRESS) is None
    new = await store.open_session("whatsapp", NEW_ADDRESS)
    assert new is not None and new.survey_id == "post_call_nps"
    assert new.data["language"] == "fa"
    assert new.data["context"] == {"previous_response": old_id}
    # The survey starts again on the new number: its first question, the two NPS lists.
    lists = (await graph_api.wait_for(5))[3:]
    assert [m["to"] for m in lists] == ["989351112233"] * 2
    assert [m["type"] for m in lists] == ["interactive"] * 2
    assert (await ok(client, "text_nine_from_new_number"))["status"] == "accepted"
    assert await stored(client, new.response_id) == [("nps", 9, "text")]
    assert await stored(client, old_id) == [("nps", 3, "button")]  # kept
    for _ in range(100):
        events = read_jsonl(tmp_path / "answers.jsonl")
        ended = [e["data"] for e in events if e["type"] == "response.abandoned"]
        if ended:
            break
        await asyncio.sleep(0.02)
    assert [(e["response_id"], e["reason"]) for e in ended] == [(old_id, "number_changed")]
    # Meta sends the event again: nothing more happens.
    assert await ok(client, "system_changed_number") == IGNORED
    await asyncio.sleep(0.2)
    assert len(graph_api.messages) == 6  # the new number's next question, nothing else


async def test_a_changed_number_without_an_open_survey_changes_nothing(
    client: Client, graph_api: FakeGraphApi
) -> None:
    assert await ok(client, "system_changed_number") == IGNORED
    await asyncio.sleep(0.2)
    assert graph_api.messages == []
    assert await client.app[GATEWAY].store.open_session("whatsapp", NEW_ADDRESS) is None


async def test_a_voice_note_when_voice_is_off_gets_the_notice(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    """Before, it was ignored in silence."""
    client = await seda(whatsapp={**whatsapp_spec(graph_api), "voice": {"enabled": False}})
    await invite(client)
    await graph_api.wait_for(2)
    assert await ok(client, "voice_note_fa") == IGNORED
    told = (await graph_api.wait_for(3))[2]
    assert told["text"] == {"body": f"{NOT_READ_FA}\n{TAP_FA}"}
    assert graph_api.media_calls == []
