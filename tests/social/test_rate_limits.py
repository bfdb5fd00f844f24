"""Rate limits of one recipient hold only that recipient: a Telegram 429 for one chat, a
WhatsApp pair rate limit (131056) for one number. Through the real app and outbox, against the
fake provider APIs on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.backends import DeliveryError
from gateway.server import GATEWAY
from social.telegram import TelegramChannel
from tests.social.conftest import Client, MakeClient, telegram_spec
from tests.social.fake_telegram import SECRET, FakeBotApi, update
from tests.social.fake_whatsapp import FakeGraphApi
from tests.social.test_whatsapp import whatsapp_spec

A, B = "5550001", "5550002"  # chat A is the one in the update files
FLOOD = "Too Many Requests: retry after 3"
# The test default caps a hold at 0.5 s; Telegram's 3 s must be waited out whole here.
RETRY = {"retry": {"base": 0.05, "cap": 30, "horizon": "1d", "poll": 0.05}}


async def webhook(client: Client, name: str) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    resp = await client.post("/telegram/support", data=update(name), headers=headers)
    assert resp.status == 200, await resp.text()


async def invite(client: Client, respondent: str, channel: str, **more: Any) -> None:
    body = {"survey": "issue_resolved", "respondent": respondent, "channel": channel,
            "language": "en", **more}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()


async def calls(bot_api: FakeBotApi, chat_id: str, count: int, within: float) -> list[float]:
    """The loop times of the first `count` sendMessage calls to a chat, waiting `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while len(bot_api.when("sendMessage", chat_id)) < count:
        if asyncio.get_running_loop().time() > deadline:
            got = len(bot_api.when("sendMessage", chat_id))
            raise AssertionError(f"chat {chat_id}: {got} of {count} messages in {within} s")
        await asyncio.sleep(0.02)
    return bot_api.when("sendMessage", chat_id)


async def test_a_flood_limit_on_one_chat_holds_that_chat_only(
    seda: MakeClient, bot_api: FakeBotApi
) -> None:
    """Before, a 429 for chat A held the whole telegram backend: B's invitation waited A's 3 s."""
    client = await seda(telegram=telegram_spec(bot_api, reply="api"), extra=RETRY)
    bot_api.fail_next("sendMessage", 429, FLOOD, chat_id=A, retry_after=3)
    # A's invitation is two messages (the survey's intro, then its question): the first is
    # refused, and both go after the 3 s, in order.
    await invite(client, f"telegram:{A}", "telegram", survey="ticket_csat")
    (refused,) = await calls(bot_api, A, 1, within=2)
    await invite(client, f"telegram:{B}", "telegram")
    (b_sent,) = await calls(bot_api, B, 1, within=2)
    assert b_sent - refused < 1.5, "chat B waited for chat A's flood limit"
    health = await (await client.get("/healthz")).json()
    assert not health["backends_failing"]  # one chat's limit: the channel is not failing
    _, intro, question = await calls(bot_api, A, 3, within=8)
    assert intro - refused >= 2.9, "chat A was sent to before its retry_after"
    assert question >= intro
    a_sent = [m["text"] for m in bot_api.sent("sendMessage", A)]
    assert a_sent[0] == a_sent[1] and a_sent[1].startswith("Hello, your support ticket")
    assert a_sent[2].startswith("From 1 to 5")
    await asyncio.sleep(0.3)
    assert len(bot_api.sent("sendMessage", A)) == 3  # nothing twice, nothing lost
    assert len(bot_api.sent("sendMessage", B)) == 1


def prompt_to(chat_id: str, event_id: str) -> dict[str, Any]:
    """An outbound.telegram event with one prompt for a chat."""
    data = {"channel": "telegram", "provider": "support", "address": f"telegram:{chat_id}",
            "response_id": f"r-{event_id}", "language": "en",
            "prompts": [{"kind": "closing", "text": "Thank you.", "language": "en"}]}  # fmt: skip
    return {"id": event_id, "type": "outbound.telegram", "data": data}


@pytest.fixture
async def bot(seda: MakeClient, bot_api: FakeBotApi) -> AsyncIterator[TelegramChannel]:
    """A started TelegramChannel on the real gateway, pointed at the fake Bot API."""
    client = await seda()
    made = TelegramChannel(client.app[GATEWAY], telegram_spec(bot_api))
    await made.start()
    yield made
    await made.stop()
    await made.close()


async def test_a_held_chat_gets_nothing_until_its_retry_after_ends(
    bot: TelegramChannel, bot_api: FakeBotApi
) -> None:
    bot_api.fail_next("sendMessage", 429, FLOOD, chat_id=A, retry_after=3)
    with pytest.raises(DeliveryError) as caught:
        await bot.deliver(prompt_to(A, "e1"))
    assert caught.value.recipient and caught.value.retry_after == 3.0
    # Another event for A (another response) is not tried before the 3 s are over...
    with pytest.raises(DeliveryError) as held:
        await bot.deliver(prompt_to(A, "e2"))
    assert held.value.recipient and held.value.retryable
    assert 2.5 < (held.value.retry_after or 0) <= 3.0
    assert len(bot_api.sent("sendMessage", A)) == 1
    await bot.deliver(prompt_to(B, "e3"))  # ...while B is sent to at once
    assert len(bot_api.sent("sendMessage", B)) == 1


async def test_several_chats_limited_at_once_is_the_bots_limit(
    bot: TelegramChannel, bot_api: FakeBotApi
) -> None:
    """Telegram's 429 does not say which limit it is (ResponseParameters has only
    retry_after): refusals for three chats within a second are the bot's ~30 a second, and the
    error is left to hold the whole backend (not marked as the recipient's)."""
    chats = ["5550011", "5550012", "5550013"]
    for chat in chats:
        bot_api.fail_next("sendMessage", 429, FLOOD, chat_id=chat, retry_after=3)
    errors = []
    for n, chat in enumerate(chats):
        with pytest.raises(DeliveryError) as caught:
            await bot.deliver(prompt_to(chat, f"e{n}"))
        errors.append(caught.value)
    assert [e.recipient for e in errors] == [True, True, False]
    assert errors[-1].retry_after == 3.0


X, Y = "989121234567", "989127654321"  # two WhatsApp respondents


async def sends(graph_api: FakeGraphApi, to: str, count: int, within: float) -> list[float]:
    """The loop times of the first `count` sends to a number, waiting `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while len(graph_api.when(to)) < count:
        if asyncio.get_running_loop().time() > deadline:
            got = len(graph_api.when(to))
            raise AssertionError(f"{got} of {count} messages to a number in {within} s")
        await asyncio.sleep(0.02)
    return graph_api.when(to)


async def test_a_pair_rate_limit_holds_that_number_only(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    """131056 is one business number to one user (about one message every 6 s). Before, its 6 s
    held the whole whatsapp backend: every other respondent waited too."""
    client = await seda(whatsapp=whatsapp_spec(graph_api), extra=RETRY)
    graph_api.fail_next(400, 131056, to=X)
    await invite(client, f"whatsapp:+{X}", "whatsapp", survey="ticket_csat")
    (refused,) = await sends(graph_api, X, 1, within=2)
    await invite(client, f"whatsapp:+{Y}", "whatsapp")
    (y_sent,) = await sends(graph_api, Y, 1, within=2)
    assert y_sent - refused < 1.5, "another respondent waited for one number's pair rate limit"
    _, intro, question = await sends(graph_api, X, 3, within=10)
    assert intro - refused >= 5.9, "the number was sent to before its 6 s"
    texts = [m for m in graph_api.messages if m["to"] == X]
    assert texts[0]["text"]["body"].startswith("Hello, your support ticket")
    assert texts[1]["type"] == "interactive" and question >= intro  # the CSAT list, after
    await asyncio.sleep(0.3)
    assert len(graph_api.when(X)) == 3 and len(graph_api.when(Y)) == 1
