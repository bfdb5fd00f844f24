"""Telegram prompts going out: keyboards, Bot API failures as delivery errors, polling, start-up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.backends import DeliveryError
from gateway.config import ConfigError
from gateway.logs import JsonFormatter
from gateway.router import Gateway
from gateway.server import GATEWAY
from social.telegram import TelegramChannel
from tests.social.conftest import MakeClient, telegram_spec
from tests.social.fake_telegram import TOKEN, FakeBotApi, update

NPS = {
    "kind": "prompt",
    "text": "0-10?",
    "language": "en",
    "question_id": "nps",
    "question_type": "nps",
}
THANKS = {"kind": "closing", "text": "Thank you.", "language": "en"}
Channel = Callable[..., Awaitable[TelegramChannel]]


def event(*prompts: dict[str, Any], provider: str = "support") -> dict[str, Any]:
    data = {"channel": "telegram", "provider": provider, "address": "telegram:5550001",
            "response_id": "r1", "language": "en", "prompts": list(prompts)}  # fmt: skip
    return {"id": "evt-1", "type": "outbound.telegram", "data": data}


@pytest.fixture
async def channel(seda: MakeClient, bot_api: FakeBotApi) -> AsyncIterator[Channel]:
    """A started TelegramChannel on the real gateway, pointed at the fake Bot API."""
    client = await seda()
    gateway: Gateway = client.app[GATEWAY]
    made: list[TelegramChannel] = []

    async def make(**overrides: Any) -> TelegramChannel:
        made.append(TelegramChannel(gateway, telegram_spec(bot_api, **overrides)))
        await made[-1].start()
        return made[-1]

    yield make
    for each in made:
        await each.stop()
        await each.close()


@pytest.mark.parametrize(
    ("status", "description", "retryable", "retry_after"),
    [
        (429, "Too Many Requests: retry after 7", True, 7.0),
        (403, "Forbidden: bot was blocked by the user", False, None),
        (400, "Bad Request: chat not found", False, None),
        (500, "Internal Server Error", True, None),
        (502, "Bad Gateway", True, None),
    ],
)
async def test_bot_api_failures_are_typed_delivery_errors(
    channel: Channel,
    bot_api: FakeBotApi,
    status: int,
    description: str,
    retryable: bool,
    retry_after: float | None,
) -> None:
    bot = await channel()
    extra = {"retry_after": 7} if status == 429 else {}
    bot_api.fail_next("sendMessage", status, description, **extra)
    with pytest.raises(DeliveryError) as caught:
        await bot.deliver(event(NPS))
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == retry_after
    assert TOKEN.split(":")[1] not in str(caught.value)


async def test_a_retry_resumes_after_the_last_message_sent(
    channel: Channel, bot_api: FakeBotApi
) -> None:
    bot = await channel()
    await bot.deliver(event(THANKS))  # another event: unaffected
    bot_api.calls.clear()
    bot_api.pass_next("sendMessage")
    bot_api.fail_next("sendMessage", 500, "Internal Server Error")  # the second message fails
    with pytest.raises(DeliveryError):
        await bot.deliver(event(NPS, THANKS))
    await bot.deliver(event(NPS, THANKS))
    assert [m["text"] for m in bot_api.sent("sendMessage")] == ["0-10?", "Thank you.", "Thank you."]


async def test_prompts_without_buttons_and_with_choices(
    channel: Channel, bot_api: FakeBotApi
) -> None:
    bot = await channel()
    choice = {"kind": "prompt", "text": "Which?", "language": "fa", "question_id": "q", "question_type": "choice",
              "choices": [{"code": "speed", "label": "سرعت", "key": "1"}, {"code": "courtesy", "label": "ادب", "key": "2"}]}  # fmt: skip
    csat = {**NPS, "question_type": "csat", "language": "ar"}
    text = {**NPS, "question_type": "text"}
    await bot.deliver(event(choice, csat, text, THANKS))
    sent = bot_api.sent("sendMessage")
    assert sent[0]["reply_markup"] == {"inline_keyboard": [
        [{"text": "سرعت", "callback_data": "speed"}], [{"text": "ادب", "callback_data": "courtesy"}]]}  # fmt: skip
    assert [row[0]["text"] for row in sent[1]["reply_markup"]["inline_keyboard"]] == [
        "⭐ غير راضٍ جدًا", "⭐⭐ غير راضٍ", "⭐⭐⭐ محايد", "⭐⭐⭐⭐ راضٍ", "⭐⭐⭐⭐⭐ راضٍ جدًا"]  # fmt: skip
    assert "reply_markup" not in sent[2] and "reply_markup" not in sent[3]


async def test_api_invitations_go_out_through_the_first_bot(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    client = await seda(telegram=telegram_spec(bot_api))
    resp = await client.post("/api/v1/invitations", json={
        "survey": "issue_resolved", "respondent": "telegram:5550001", "language": "ar", "channel": "telegram"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    (sent,) = await bot_api.wait_for("sendMessage", 1)
    assert sent["reply_markup"]["inline_keyboard"] == [[
        {"text": "نعم", "callback_data": "yes"}, {"text": "لا", "callback_data": "no"}]]  # fmt: skip


async def test_the_outbox_retries_after_a_flood_limit(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    bot_api.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    client = await seda(telegram=telegram_spec(bot_api))
    resp = await client.post("/telegram/support", data=update("start_post_call_nps_fa"),
                             headers={"X-Telegram-Bot-Api-Secret-Token": "s3da-webhook_secret"})  # fmt: skip
    assert resp.status == 200
    first, second = await bot_api.wait_for("sendMessage", 2)
    assert first == second  # refused once, then sent


async def test_polling_mode(seda: MakeClient, bot_api: FakeBotApi) -> None:
    bot_api.updates.append(json.loads(update("start_post_call_nps_fa")))
    client = await seda(
        telegram=telegram_spec(bot_api, mode="polling", secret=None, poll_timeout=1)
    )
    await bot_api.wait_for("sendMessage", 1)
    polls = await bot_api.wait_for("getUpdates", 2)
    assert bot_api.sent("deleteWebhook")  # getUpdates is refused while a webhook is set
    assert "offset" not in polls[0] and polls[1]["offset"] == "900000002"
    assert polls[0]["allowed_updates"] == [
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    ]
    resp = await client.post("/telegram/support", data=b"{}")
    assert resp.status == 404  # a polling bot takes no webhooks


def unreadable_poll(update_id: int) -> dict[str, Any]:
    """A poll as a Bot API version PTB does not know yet might send it (no persistent_id on its
    options): valid JSON that PTB cannot turn into an Update."""
    found = json.loads(update("poll"))
    found["update_id"] = update_id
    for option in found["message"]["poll"]["options"]:
        del option["persistent_id"]
    return dict(found)


async def test_polling_skips_an_update_it_cannot_read(
    seda: MakeClient, bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, PTB's parse error escaped getUpdates and ended the polling task in silence: the
    # bot heard nothing more until Seda was restarted (and then met the same update again).
    bot_api.updates.append(unreadable_poll(900000000))
    bot_api.updates.append(json.loads(update("start_post_call_nps_fa")))  # 900000001
    await seda(telegram=telegram_spec(bot_api, mode="polling", secret=None, poll_timeout=1))
    await bot_api.wait_for("sendMessage", 1)  # the next update was read and answered
    polls = await bot_api.wait_for("getUpdates", 2)
    assert polls[-1]["offset"] == "900000002"  # past both
    (skipped,) = [r for r in caplog.records if "not understood" in r.getMessage()]
    assert skipped.fields["update_id"] == 900000000  # type: ignore[attr-defined]
    assert "مریم" not in str(skipped.fields)  # type: ignore[attr-defined]


async def test_an_update_ptb_cannot_read_is_logged_without_what_it_says(
    seda: MakeClient, bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    """PTB logs an update it cannot parse at CRITICAL with the whole update as its argument:
    the respondent's name, chat id and what they wrote. As Seda's log lines render it, only
    PTB's own words are left."""
    bot_api.updates.append(unreadable_poll(900000000))
    await seda(telegram=telegram_spec(bot_api, mode="polling", secret=None, poll_timeout=1))
    await bot_api.wait_for("getUpdates", 2)
    for _ in range(100):
        if any("not understood" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    rendered = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "Error while parsing updates" in rendered  # PTB's record is there...
    for private in ("مریم", "کدام بهتر است", "first_name", TOKEN):
        assert private not in rendered  # ...without the update it quoted


async def test_health_says_while_getupdates_fails(seda: MakeClient, bot_api: FakeBotApi) -> None:
    bot_api.fail_next("getUpdates", 502, "Bad Gateway")  # then answered, 1 s later
    client = await seda(
        telegram=telegram_spec(bot_api, mode="polling", secret=None, poll_timeout=1)
    )
    seen = []
    for _ in range(150):
        body = await (await client.get("/healthz")).json()
        seen.append(body["status"])
        if body["status"] == "ok" and "degraded" in seen:
            break
        if body["status"] == "degraded":
            bot = body["channels"]["telegram"]["bots"]["support"]
            assert bot["polling"] == "failing" and bot["ready"] is True, bot
        await asyncio.sleep(0.02)
    assert "degraded" in seen and seen[-1] == "ok", seen
    assert body["channels"]["telegram"] == {
        "status": "ok", "bots": {"support": {"mode": "polling", "ready": True}}}  # fmt: skip


async def test_webhook_url_is_registered_with_the_secret(
    channel: Channel, bot_api: FakeBotApi
) -> None:
    await channel(webhook_url="https://seda.example.com/telegram/support")
    (params,) = bot_api.sent("setWebhook")
    assert params["url"] == "https://seda.example.com/telegram/support"
    assert params["secret_token"] == "s3da-webhook_secret"
    assert params["allowed_updates"] == [
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    ]


async def test_an_unreachable_bot_api_does_not_stop_seda(channel: Channel) -> None:
    bot = await channel(base_url="http://127.0.0.1:9/bot")  # nothing listens there
    assert not bot.bots["support"].ready
    with pytest.raises(DeliveryError) as caught:
        await bot.deliver(event(NPS))
    assert caught.value.retryable


async def test_a_refused_token_is_a_config_error_without_the_token(
    channel: Channel, bot_api: FakeBotApi
) -> None:
    bot_api.fail_next("getMe", 401, "Unauthorized")
    with pytest.raises(ConfigError) as caught:
        await channel()
    assert "support" in str(caught.value) and TOKEN.split(":")[1] not in str(caught.value)


@pytest.mark.parametrize(
    ("bots", "problem"),
    [
        ({}, "at least one"),
        ({"bad name": {"token": TOKEN, "secret": "s"}}, "must be 1-64"),
        ({"b": {"secret": "s"}}, "token"),
        ({"b": {"token": TOKEN}}, "secret"),
        ({"b": {"token": TOKEN, "secret": "has space"}}, "secret"),
        ({"b": {"token": TOKEN, "secret": "s", "mode": "push"}}, "mode"),
    ],
)
async def test_config_errors(seda: MakeClient, bots: dict[str, Any], problem: str) -> None:
    client = await seda()
    with pytest.raises(ConfigError, match=problem):
        TelegramChannel(client.app[GATEWAY], {"bots": bots})


async def test_reprs_hold_no_token_or_secret(channel: Channel) -> None:
    bot = await channel()
    for shown in (repr(bot.bots["support"]), repr(bot)):
        assert TOKEN not in shown and "s3da-webhook_secret" not in shown


async def test_prompts_go_out_through_the_bot_the_respondent_uses(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    spec = telegram_spec(bot_api)
    sales_token = "7098765432:AAsalesBotTokenForTests_abcdef0123"
    spec["bots"]["sales"] = {**spec["bots"]["support"], "token": sales_token}
    client = await seda(telegram=spec)
    resp = await client.post("/api/v1/invitations", json={
        "survey": "issue_resolved", "respondent": "telegram:5550001", "channel": "telegram",
        "line": "sales"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    resp = await client.post("/telegram/sales", data=update("start_post_call_nps_fa"),
                             headers={"X-Telegram-Bot-Api-Secret-Token": "s3da-webhook_secret"})  # fmt: skip
    assert resp.status == 200
    await bot_api.wait_for("sendMessage", 2)
    sends = [token for method, token in bot_api.tokens if method == "sendMessage"]
    assert sends == [sales_token, sales_token]


@pytest.mark.parametrize(
    ("respondent", "line", "says"),
    [
        ("tel:+989121234567", None, "telegram:<chat id>"),
        ("telegram:@someone", None, "telegram:<chat id>"),
        ("telegram:5550001", "sales", "no bot 'sales'"),
    ],
)
async def test_an_invitation_telegram_cannot_send_is_refused(
    respondent: str, line: str | None, says: str, seda: MakeClient, bot_api: FakeBotApi
) -> None:
    client = await seda(telegram=telegram_spec(bot_api))
    body = {"survey": "issue_resolved", "respondent": respondent, "channel": "telegram",
            **({"line": line} if line else {})}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 422, await resp.text()
    assert says in (await resp.json())["error"]
    gateway: Gateway = client.app[GATEWAY]
    assert await gateway.store.list_outbox() == []  # nothing queued to send
