"""Plain text updates are read without PTB's objects (social.telegram_updates.plain_text): the fast
path must take only what PTB's Update.de_json takes, and read it as PTB does; everything else
(commands, buttons, voice notes, edits, unusual fields) still goes through PTB."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from telegram import Update

from gateway.server import GATEWAY
from social.telegram_updates import plain_text
from tests.social.conftest import Client, MakeClient, telegram_spec
from tests.social.fake_telegram import DATA, SECRET, FakeBotApi, update

HEADER = "X-Telegram-Bot-Api-Secret-Token"
PAYLOADS = sorted(path.stem for path in DATA.glob("*.json"))
FAST = {"group_message", "text_nps_nine_fa", "text_reason_fa", "text_resolved_no_fa"}


def plain_update() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(update("text_nps_nine_fa"))
    return data


@pytest.mark.parametrize("name", PAYLOADS)
def test_the_fast_path_reads_what_ptb_reads(name: str) -> None:
    data = json.loads(update(name))
    plain = plain_text(copy.deepcopy(data))
    assert (plain is not None) == (name in FAST)
    if plain is None:
        return
    parsed = Update.de_json(data, None)
    message = parsed.message
    assert message is not None and parsed.effective_message is message
    assert parsed.edited_message is None and parsed.callback_query is None
    assert message.voice is None and message.text is not None
    assert not message.text.startswith("/")
    expected = (parsed.update_id, message.chat.id, message.chat.type, message.text)
    assert (plain.update_id, plain.chat_id, plain.chat_type, plain.text) == expected


def without(key: str) -> Any:
    def change(message: dict[str, Any]) -> None:
        del message[key]

    return change


# Updates PTB refuses (400): the fast path must not take them either.
REFUSED = {
    "no date": without("date"),
    "no message_id": without("message_id"),
    "a user without first_name": lambda m: m["from"].pop("first_name"),
    "a chat without type": lambda m: m["chat"].pop("type"),
    "a date as text": lambda m: m.update(date="yesterday"),
    "a chat field twice": lambda m: m["chat"].update(api_kwargs={}),
}
# Updates PTB takes that the fast path leaves to PTB.
LEFT_TO_PTB = {
    **REFUSED,
    "a command": lambda m: m.update(text="/stop"),
    "entities": lambda m: m.update(entities=[]),
    "a caption field": lambda m: m.update(caption="x"),
    "text as a number": lambda m: m.update(text=9),
    "a chat id as text": lambda m: m["chat"].update(id="5550001"),
    "a date past 2106": lambda m: m.update(date=2**32),
    "a boolean date": lambda m: m.update(date=True),
    "from as null": lambda m: m.update({"from": None}),
    "an unknown user field": lambda m: m["from"].update(can_join_groups=True),
}


@pytest.mark.parametrize("change", LEFT_TO_PTB.values(), ids=LEFT_TO_PTB.keys())
def test_anything_unusual_is_left_to_ptb(change: Any) -> None:
    data = plain_update()
    assert plain_text(copy.deepcopy(data)) is not None
    change(data["message"])
    assert plain_text(data) is None


@pytest.mark.parametrize(
    "extra",
    [{"edited_message": {}}, {"callback_query": {}}, {"foo": 1}],
    ids=["edited", "button", "unknown"],
)
def test_other_update_kinds_are_left_to_ptb(extra: dict[str, Any]) -> None:
    data = {**plain_update(), **extra}
    assert plain_text(data) is None
    assert plain_text({"update_id": "7", "message": plain_update()["message"]}) is None
    assert plain_text([plain_update()]) is None


def payload(name: str, change: Any) -> dict[str, Any]:
    """A payload file with one change applied to its update."""
    data: dict[str, Any] = json.loads(update(name))
    change(data)
    return data


# Updates PTB builds without checking types, which Seda refuses (400) before reading them.
MISTYPED = {
    "text as a number": lambda d: d["message"].update(text=9),
    "text as a list": lambda d: d["message"].update(text=["9"]),
    "a chat id as text": lambda d: d["message"]["chat"].update(id="5550001"),
    "a chat id of 40 digits": lambda d: d["message"]["chat"].update(id=10**40),
    "no chat": lambda d: d["message"].pop("chat"),
    "a date past year 9999": lambda d: d["message"].update(date=10**20),
}
MISTYPED_FILES = {
    "a voice note's duration as text": ("voice_message", lambda d: d["message"]["voice"].update(duration="x")),
    "a voice note of 10^20 seconds": ("voice_message", lambda d: d["message"]["voice"].update(duration=10**20)),
    "a button without its sender": ("callback_nps_3", lambda d: d["callback_query"].pop("from")),
    "a button whose data is a number": ("callback_nps_3", lambda d: d["callback_query"].update(data=5)),
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "change"),
    [("text_nps_nine_fa", c) for c in MISTYPED.values()] + list(MISTYPED_FILES.values()),
    ids=[*MISTYPED, *MISTYPED_FILES],
)
async def test_what_ptb_builds_with_the_wrong_types_is_400(
    seda: MakeClient, bot_api: FakeBotApi, name: str, change: Any
) -> None:
    """Before, each was a 500, and a chat id as text answered for that chat."""
    client: Client = await seda(telegram=telegram_spec(bot_api))
    started = await client.post(
        "/telegram/support", data=update("start_post_call_nps_fa"), headers={HEADER: SECRET}
    )
    assert started.status == 200
    resp = await client.post(
        "/telegram/support", json=payload(name, change), headers={HEADER: SECRET}
    )
    assert resp.status == 400, await resp.text()
    row = await client.app[GATEWAY].store.open_session("telegram", "telegram:5550001")
    assert row is not None and await client.app[GATEWAY].store.answers_for(row.response_id) == []


@pytest.mark.parametrize("change", REFUSED.values(), ids=REFUSED.keys())
async def test_what_ptb_refuses_is_still_400(
    seda: MakeClient, bot_api: FakeBotApi, change: Any
) -> None:
    client: Client = await seda(telegram=telegram_spec(bot_api))
    started = await client.post(
        "/telegram/support", data=update("start_post_call_nps_fa"), headers={HEADER: SECRET}
    )
    assert started.status == 200
    data = plain_update()
    change(data["message"])
    resp = await client.post("/telegram/support", json=data, headers={HEADER: SECRET})
    assert resp.status == 400, await resp.text()
    row = await client.app[GATEWAY].store.open_session("telegram", "telegram:5550001")
    assert row is not None and await client.app[GATEWAY].store.answers_for(row.response_id) == []


async def test_both_paths_answer_alike(seda: MakeClient, bot_api: FakeBotApi) -> None:
    """The same «۹» from two respondents in the same state, one read by the fast path and one
    by PTB (an empty entity list sends it there): the same webhook answer, the same answer."""
    client: Client = await seda(telegram=telegram_spec(bot_api))
    answers = []
    for chat, entities in ((5550001, None), (5550002, [])):
        start = json.loads(update("start_post_call_nps_fa"))
        start["update_id"] += chat
        start["message"]["chat"]["id"] = start["message"]["from"]["id"] = chat
        resp = await client.post("/telegram/support", json=start, headers={HEADER: SECRET})
        assert resp.status == 200
        reply = plain_update()
        reply["update_id"] += chat
        reply["message"]["chat"]["id"] = reply["message"]["from"]["id"] = chat
        if entities is not None:
            reply["message"]["entities"] = entities
        assert (plain_text(copy.deepcopy(reply)) is None) == (entities is not None)
        resp = await client.post("/telegram/support", json=reply, headers={HEADER: SECRET})
        assert resp.status == 200
        body = await resp.json()
        assert body.pop("chat_id") == chat
        row = await client.app[GATEWAY].store.open_session("telegram", f"telegram:{chat}")
        assert row is not None
        stored = await client.app[GATEWAY].store.answers_for(row.response_id)
        answers.append((body, [(a["question_id"], a["value"], a["input_mode"]) for a in stored]))
    assert answers[0] == answers[1]
    assert answers[0][0]["method"] == "sendMessage"
    assert answers[0][1] == [("nps", 9, "text")]
