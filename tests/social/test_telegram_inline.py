"""`reply: inline`: a reply's prompts in the webhook answer, through the real app.

The test plays Telegram's side of the webhook: it posts real-shaped updates and reads the method
each answer carries, which Telegram would run (sendMessage). The fake Bot API on loopback gets
every call Seda makes itself: invitations, answerCallbackQuery, and prompts sent by the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError
from gateway.engine import OPT_OUT_NOTICE
from gateway.model import Inbound, Outbound
from gateway.results import Result
from gateway.router import Gateway
from gateway.server import GATEWAY
from social.telegram import TelegramChannel
from social.telegram_inline import MAX_TEXT, method
from tests.social.conftest import TEST_FLOWS, Client, MakeClient, telegram_spec
from tests.social.fake_telegram import SECRET, TOKEN, FakeBotApi, update

CHAT = 5550001
NPS_FA = "از صفر تا ده، چقدر احتمال دارد ما را به دوستان یا همکارانتان پیشنهاد کنید؟"
REASON_FA = "متأسفیم که تجربهٔ خوبی نداشتید. لطفاً بگویید چه چیزی را باید بهتر کنیم."
RESOLVED_FA = "آیا مشکل شما در این تماس حل شد؟ بله یا خیر"
CLOSING_FA = "از اینکه وقت گذاشتید سپاسگزاریم. روز خوبی داشته باشید."
YES_NO_FA = {"inline_keyboard": [[{"text": "بله", "callback_data": "yes"},
                                  {"text": "خیر", "callback_data": "no"}]]}  # fmt: skip
NPS_KEYS = [["0", "1", "2", "3", "4", "5"], ["6", "7", "8", "9", "10"]]
Receive = Callable[[Inbound], Awaitable[Result]]


async def webhook(client: Client, body: bytes | str) -> dict[str, Any]:
    """POST one update as Telegram does (a payload file's name, or raw JSON): the answer."""
    raw = update(body) if isinstance(body, str) else body
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    resp = await client.post("/telegram/support", data=raw, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()  # type: ignore[no-any-return]


def text_update(update_id: int, text: str) -> bytes:
    """The typed-text update file with another id and text (same respondent, same chat)."""
    data = json.loads(update("text_nps_nine_fa"))
    data["update_id"] = update_id
    data["message"]["text"] = text
    return json.dumps(data).encode("utf-8")


def send_message(text: str, markup: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method a webhook answer carries to send one message to the test chat."""
    call: dict[str, Any] = {"method": "sendMessage", "chat_id": CHAT, "text": text}
    if markup is not None:
        call["reply_markup"] = markup
    return call


async def outbound_rows(client: Client) -> list[dict[str, Any]]:
    """The prompts Seda queued for the Telegram channel (outbound.telegram events)."""
    rows = await client.app[GATEWAY].store.list_outbox(backend="channel.telegram")
    return [json.loads(row.payload)["data"] for row in rows]


async def quiet(bot_api: FakeBotApi, count: int) -> None:
    """Assert that the fake Bot API got `count` sendMessage calls and no more arrive."""
    await bot_api.wait_for("sendMessage", count)
    await asyncio.sleep(0.2)  # the forwarder polls every 0.05 s in tests
    assert len(bot_api.sent("sendMessage")) == count


# A whole Persian NPS survey started by a deep link: (update file, prompt text, keyboard).
BY_BUTTONS = [
    ("callback_nps_3", REASON_FA, None),  # a detractor: asked why (a text question)
    ("text_reason_fa", RESOLVED_FA, YES_NO_FA),
    ("callback_resolved_yes", CLOSING_FA, None),
]
BY_TEXT = [
    ("text_nps_nine_fa", RESOLVED_FA, YES_NO_FA),  # «۹»: a promoter, straight to "resolved"
    ("text_resolved_no_fa", CLOSING_FA, None),  # «خیر»
]
ANSWERS = {
    "buttons": [("nps", 3, "button"), ("reason", "صف انتظار خیلی طولانی بود و کسی جواب نداد",
                "text"), ("resolved", True, "button")],
    "text": [("nps", 9, "text"), ("resolved", False, "text")],
}  # fmt: skip


@pytest.mark.parametrize("reply", ["inline", "api"])
@pytest.mark.parametrize(
    ("path", "steps"), [("buttons", BY_BUTTONS), ("text", BY_TEXT)], ids=["buttons", "text"]
)
async def test_a_whole_persian_nps_survey(
    seda: MakeClient,
    bot_api: FakeBotApi,
    reply: str,
    path: str,
    steps: list[tuple[str, str, dict[str, Any] | None]],
) -> None:
    spec = telegram_spec(bot_api) if reply == "inline" else telegram_spec(bot_api, reply="api")
    client: Client = await seda(telegram=spec)  # inline: the default, not named in the config
    started = await webhook(client, "start_post_call_nps_fa")
    assert started == {"status": "accepted", "reason": "survey started"}
    # The invitation has no webhook answer to ride on: the Bot API sends it, with its keyboard.
    (invitation,) = await bot_api.wait_for("sendMessage", 1)
    assert (invitation["chat_id"], invitation["text"]) == (str(CHAT), NPS_FA)
    keys = invitation["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in row] for row in keys] == NPS_KEYS

    for number, (name, text, markup) in enumerate(steps, start=2):
        answer = await webhook(client, name)
        if reply == "inline":
            assert answer == send_message(text, markup)
            continue
        assert answer["status"] == "accepted" and "method" not in answer
        sent = (await bot_api.wait_for("sendMessage", number))[number - 1]
        expected = {"chat_id": str(CHAT), "text": text}
        assert sent == (expected if markup is None else {**expected, "reply_markup": markup})

    await quiet(bot_api, 1 if reply == "inline" else 1 + len(steps))
    queued = await outbound_rows(client)
    assert len(queued) == (1 if reply == "inline" else 1 + len(steps))  # inline: nothing queued
    presses = [json.loads(update(name))["callback_query"]["id"]
               for name, _, _ in steps if name.startswith("callback")]  # fmt: skip
    assert [q["callback_query_id"] for q in bot_api.sent("answerCallbackQuery")] == presses
    response_id = queued[0]["response_id"]
    stored = await client.app[GATEWAY].store.answers_for(response_id)
    assert [(a["question_id"], a["value"], a["input_mode"]) for a in stored] == ANSWERS[path]
    state = await (await client.get(f"/api/v1/responses/{response_id}")).json()
    assert state["status"] == "completed"


async def test_an_api_invitation_goes_through_the_bot_api_and_the_reply_inline(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    client: Client = await seda(telegram=telegram_spec(bot_api))
    resp = await client.post("/api/v1/invitations", json={
        "survey": "issue_resolved", "respondent": f"telegram:{CHAT}", "language": "ar",
        "channel": "telegram"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    (sent,) = await bot_api.wait_for("sendMessage", 1)
    assert sent["text"] == "هل حُلّت المشكلة التي أبلغت عنها؟ نعم أم لا"
    assert await webhook(client, "callback_resolved_yes_ar") == send_message("شكراً على ردّك.")
    await quiet(bot_api, 1)
    assert len(bot_api.sent("answerCallbackQuery")) == 1


async def test_a_rating_keyboard_takes_its_bounds_from_the_response(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    """rated_visit's ten_point is 1-10, rated_branch's 0-4: the inline keyboard is 1-10."""
    client: Client = await seda(flows=TEST_FLOWS, telegram=telegram_spec(bot_api))
    resp = await client.post("/api/v1/invitations", json={
        "survey": "rated_visit", "respondent": f"telegram:{CHAT}", "language": "fa",
        "channel": "telegram"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    await bot_api.wait_for("sendMessage", 1)  # stars
    effort = await webhook(client, text_update(900000101, "۴"))
    assert [[b["callback_data"] for b in row] for row in effort["reply_markup"]["inline_keyboard"]
            ] == [["1", "2", "3", "4"], ["5", "6", "7"]]  # fmt: skip
    ten = await webhook(client, text_update(900000102, "5"))
    assert ten["text"] == "از ۱ تا ۱۰ به غذا چه نمره‌ای می‌دهید؟"
    rows = ten["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in rows] == [
        ["۱", "۲", "۳", "۴", "۵"], ["۶", "۷", "۸", "۹", "۱۰"]]  # fmt: skip
    await quiet(bot_api, 1)


async def test_a_redelivered_update_gets_the_same_answer_and_changes_nothing(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    """Telegram delivers an update again only when it did not take Seda's answer (not 2xx, a
    timeout, a closed connection), and it runs the method of an answer only when it takes it:
    so the answer to a redelivery carries the same prompt, which reaches the chat once."""
    client: Client = await seda(telegram=telegram_spec(bot_api))
    await webhook(client, "start_post_call_nps_fa")
    await bot_api.wait_for("sendMessage", 1)
    for name, prompt in (("callback_nps_3", send_message(REASON_FA)),
                         ("text_reason_fa", send_message(RESOLVED_FA, YES_NO_FA))):  # fmt: skip
        first = await webhook(client, name)
        again = await webhook(client, name)  # as if the first answer never reached Telegram
        assert first == again == prompt
    # One press, one answerCallbackQuery, though its update came twice.
    assert [q["callback_query_id"] for q in bot_api.sent("answerCallbackQuery")] == [
        "4382bfdwdsb323b2d9"
    ]
    response_id = (await outbound_rows(client))[0]["response_id"]
    stored = await client.app[GATEWAY].store.answers_for(response_id)
    assert [a["question_id"] for a in stored] == ["nps", "reason"]
    await quiet(bot_api, 1)
    assert len(await outbound_rows(client)) == 1


async def test_stop_answers_with_the_opt_out_notice(seda: MakeClient, bot_api: FakeBotApi) -> None:
    client: Client = await seda(telegram=telegram_spec(bot_api))
    await webhook(client, "start_post_call_nps_fa")
    assert await webhook(client, "stop_command") == send_message(OPT_OUT_NOTICE["fa"])
    again = await webhook(client, "start_post_call_nps")
    assert again["status"] == "ignored" and "opted out" in again["reason"]
    await quiet(bot_api, 1)


@pytest.fixture
def step_adds(monkeypatch: pytest.MonkeyPatch) -> Callable[[Client, Outbound], None]:
    """Make every reply step of the app yield one more message before its own.

    No survey feature gives a reply step two messages today (only invitations and reminders
    have them, and they go through the outbox); this stands in for one, in front of the real
    gateway: the step itself is still stepped and stored by the real router and store.
    """

    def install(client: Client, extra: Outbound) -> None:
        gateway: Gateway = client.app[GATEWAY]
        real: Receive = gateway.receive

        async def receive(inbound: Inbound) -> Result:
            result = await real(inbound)
            if not result.outbound:
                return result
            return replace(result, outbound=(extra, *result.outbound))

        monkeypatch.setattr(gateway, "receive", receive)

    return install


THANKS_FA = Outbound("notice", "پاسخ شما ثبت شد.", "fa")
AGAIN_NPS_FA = Outbound("invalid", "لطفاً عددی بین صفر تا ده بگویید یا وارد کنید.", "fa",
                        question_id="nps", question_type="nps")  # fmt: skip


async def test_a_notice_and_a_prompt_are_joined_in_one_message(
    seda: MakeClient, bot_api: FakeBotApi, step_adds: Callable[[Client, Outbound], None]
) -> None:
    client: Client = await seda(telegram=telegram_spec(bot_api))
    step_adds(client, THANKS_FA)
    await webhook(client, "start_post_call_nps_fa")
    answer = await webhook(client, "text_nps_nine_fa")
    assert answer == send_message(f"{THANKS_FA.text}\n\n{RESOLVED_FA}", YES_NO_FA)
    await quiet(bot_api, 1)


async def test_two_keyboards_go_through_the_outbox_in_order_once(
    seda: MakeClient, bot_api: FakeBotApi, step_adds: Callable[[Client, Outbound], None]
) -> None:
    client: Client = await seda(telegram=telegram_spec(bot_api))
    step_adds(client, AGAIN_NPS_FA)  # a message with the NPS keyboard, then "resolved"
    await webhook(client, "start_post_call_nps_fa")
    await bot_api.wait_for("sendMessage", 1)
    assert await webhook(client, "text_nps_nine_fa") == {"status": "accepted"}
    assert await webhook(client, "text_nps_nine_fa") == {  # redelivered: queued once only
        "status": "accepted", "reason": "duplicate"}  # fmt: skip
    await quiet(bot_api, 3)
    _, nps_again, resolved = bot_api.sent("sendMessage")
    keys = nps_again["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in row] for row in keys] == NPS_KEYS
    assert (resolved["text"], resolved["reply_markup"]) == (RESOLVED_FA, YES_NO_FA)
    queued = await outbound_rows(client)
    assert [len(q["prompts"]) for q in queued] == [1, 2]
    assert queued[1]["in_reply_to"] == "support:900000006" and queued[1]["line"] == "support"


async def test_a_prompt_longer_than_telegram_takes_goes_through_the_outbox(
    seda: MakeClient, bot_api: FakeBotApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram refuses a text over 4096 characters; from an answer, nobody would know. The
    outbox sends it as `reply: api` would, so a refusal there is a visible dead letter."""
    long_text = "لطفاً جزئیات را بنویسید. " * 180  # 4500 characters
    flows = tmp_path / "flows"
    flows.mkdir()
    survey = {"id": "long_prompt", "version": 1, "languages": ["fa"],
              "invalid": {"fa": "دوباره پاسخ دهید."}, "questions": [
        {"id": "resolved", "type": "yes_no", "prompt": {"fa": RESOLVED_FA}},
        {"id": "details", "type": "text", "prompt": {"fa": long_text}}]}  # fmt: skip
    (flows / "long_prompt.yaml").write_text(yaml.safe_dump(survey, allow_unicode=True), "utf-8")
    client: Client = await seda(flows=flows, telegram=telegram_spec(bot_api))
    resp = await client.post("/api/v1/invitations", json={
        "survey": "long_prompt", "respondent": f"telegram:{CHAT}", "channel": "telegram"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    await bot_api.wait_for("sendMessage", 1)
    caplog.set_level(logging.INFO)
    assert await webhook(client, "text_resolved_no_fa") == {"status": "accepted"}
    await quiet(bot_api, 2)
    assert bot_api.sent("sendMessage")[1]["text"] == long_text
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "do not fit one message" in logged
    for private in (str(CHAT), "لطفاً", TOKEN, SECRET):
        assert private not in logged


async def test_polling_is_unaffected(seda: MakeClient, bot_api: FakeBotApi) -> None:
    """getUpdates has no answer to carry a method: a polling bot sends every prompt itself."""
    for name in ("start_post_call_nps_fa", "callback_nps_3"):
        bot_api.updates.append(json.loads(update(name)))
    await seda(telegram=telegram_spec(bot_api, mode="polling", secret=None, poll_timeout=1))
    _, reason = await bot_api.wait_for("sendMessage", 2)
    assert (reason["chat_id"], reason["text"]) == (str(CHAT), REASON_FA)
    await bot_api.wait_for("answerCallbackQuery", 1)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"reply": "twiml"}, "reply: inline or api"),
        ({"reply": ""}, "reply: a non-empty string"),
        ({"reply": "inline", "mode": "polling"}, "inline needs mode webhook"),
    ],
)
async def test_reply_config_errors(
    seda: MakeClient, bot_api: FakeBotApi, overrides: dict[str, Any], problem: str
) -> None:
    client: Client = await seda()
    with pytest.raises(ConfigError, match=problem):
        TelegramChannel(client.app[GATEWAY], telegram_spec(bot_api, **overrides))


async def test_reply_defaults(seda: MakeClient, bot_api: FakeBotApi) -> None:
    client: Client = await seda()
    spec = telegram_spec(bot_api)
    spec["bots"]["poller"] = {**spec["bots"]["support"], "mode": "polling"}
    spec["bots"]["sender"] = {**spec["bots"]["support"], "reply": "api"}
    bots = TelegramChannel(client.app[GATEWAY], spec).bots
    assert {name: bot.reply for name, bot in bots.items()} == {
        "support": "inline", "poller": "api", "sender": "api"}  # fmt: skip


NPS = {"kind": "prompt", "text": "0-10?", "language": "en", "question_id": "nps",
       "question_type": "nps"}  # fmt: skip
NOTICE = {"kind": "notice", "text": "Thanks.", "language": "en"}
REASON = {"kind": "prompt", "text": "Why?", "language": "en", "question_id": "reason",
          "question_type": "text"}  # fmt: skip
NPS_MARKUP = {"inline_keyboard": [[{"text": str(n), "callback_data": str(n)} for n in range(6)],
                                  [{"text": str(n), "callback_data": str(n)}
                                   for n in range(6, 11)]]}  # fmt: skip


@pytest.mark.parametrize(
    ("prompts", "expected"),
    [
        ([NPS], send_message("0-10?", NPS_MARKUP)),
        ([REASON], send_message("Why?")),
        ([NOTICE, NPS], send_message("Thanks.\n\n0-10?", NPS_MARKUP)),
        ([NOTICE, REASON, NOTICE], send_message("Thanks.\n\nWhy?\n\nThanks.")),
        ([NPS, NOTICE], None),  # the keyboard is not the last message's
        ([NPS, NPS], None),  # two keyboards
        ([], None),
        ([{**NOTICE, "text": "ا" * MAX_TEXT}], send_message("ا" * MAX_TEXT)),
        ([{**NOTICE, "text": "ا" * (MAX_TEXT + 1)}], None),
        ([{**NOTICE, "text": "x" * (MAX_TEXT - 2)}, {**NOTICE, "text": "y"}], None),  # + \n\n
        ([{**NOTICE, "text": "😀" * (MAX_TEXT // 2)}], send_message("😀" * (MAX_TEXT // 2))),
        ([{**NOTICE, "text": "😀" * (MAX_TEXT // 2) + "x"}], None),  # 2 UTF-16 units each
    ],
    ids=[
        "prompt",
        "no-buttons",
        "notice+prompt",
        "three",
        "buttons-first",
        "two-keyboards",
        "nothing",
        "4096",
        "4097",
        "joined-4097",
        "astral-4096",
        "astral-4097",
    ],
)
def test_which_messages_make_one_webhook_answer(
    prompts: list[dict[str, Any]], expected: dict[str, Any] | None
) -> None:
    body = method(CHAT, prompts)
    assert (json.loads(body) if body is not None else None) == expected
