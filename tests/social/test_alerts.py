"""Low-score alerts to a manager chat: real Update files drive a Persian NPS survey over the fake
Bot API, and the alert goes through the outbox (retried when the Bot API fails)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.backends import DeliveryError, build_backend
from gateway.ids import system_clock
from gateway.server import FORWARDER, GATEWAY
from social.alerts import TelegramAlert
from tests.social.conftest import Client, MakeClient, telegram_spec
from tests.social.fake_telegram import SECRET, TOKEN, FakeBotApi, update

MANAGER = "-1001234567890"  # the store manager's group
CHAT = "5550001"  # the respondent's chat: personal, never in an alert unless opted in
REASON = "صف انتظار خیلی طولانی بود"


def alert_spec(bot_api: FakeBotApi, **overrides: Any) -> dict[str, Any]:
    return {"type": "telegram_alert", "token": TOKEN, "base_url": f"{bot_api.url}/bot",
            "chat_id": int(MANAGER), "events": ["answer.recorded"],
            "rules": [{"question_type": "nps", "if": "value <= 6"},
                      {"question_type": "csat", "if": "value <= 2"}], **overrides}  # fmt: skip


async def seda_with_alerts(seda: MakeClient, bot_api: FakeBotApi, tmp: Any, **alert: Any) -> Client:
    backends = {"answers_file": {"type": "jsonl", "path": str(tmp / "answers.jsonl")},
                "manager": alert_spec(bot_api, **alert)}  # fmt: skip
    # reply: api, so that the respondent's prompts are counted at the fake Bot API too.
    spec = telegram_spec(bot_api, reply="api")
    client: Client = await seda(extra={"backends": backends}, telegram=spec)
    return client


async def send(client: Client, name: str) -> dict[str, Any]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    resp = await client.post("/telegram/support", data=update(name), headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def handled(client: Client, events: int) -> None:
    """Wait until the alert backend has taken `events` events (delivered, alert or not)."""
    forwarder = client.app[FORWARDER]
    for _ in range(250):
        if forwarder.delivered["manager"] >= events:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{forwarder.delivered['manager']} of {events} events handled")


async def test_a_detractor_alerts_the_manager_chat_once(
    seda: MakeClient, bot_api: FakeBotApi, tmp_path: Any
) -> None:
    client = await seda_with_alerts(seda, bot_api, tmp_path)
    # Each reply after its question has reached the chat, as a person answers (a prompt still
    # waiting when its question is answered is dropped: server.StillAsked).
    for n, name in enumerate(["start_post_call_nps_fa", "callback_nps_3", "text_reason_fa"], 1):
        await send(client, name)  # callback_nps_3: a detractor
        await bot_api.wait_for("sendMessage", n, CHAT)
    await send(client, "callback_resolved_yes")
    await handled(client, 3)  # nps, reason, resolved
    (alert,) = bot_api.sent("sendMessage", MANAGER)
    text = alert["text"]
    assert text.startswith("⚠️ امتیاز پایین: nps = ۳")
    assert "post_call_nps" in text and "telegram" in text
    respondent = client.app[GATEWAY].respondent(f"telegram:{CHAT}").id
    assert respondent in text
    assert CHAT not in text and REASON not in text  # no address, no free text
    # The respondent got their four prompts; the alert went to the manager's chat only.
    assert len(bot_api.sent("sendMessage", CHAT)) == 4
    assert client.app[FORWARDER].failures["manager"] == 0


async def test_a_promoter_alerts_nobody(
    seda: MakeClient, bot_api: FakeBotApi, tmp_path: Any
) -> None:
    client = await seda_with_alerts(seda, bot_api, tmp_path)
    for n, name in enumerate(["start_post_call_nps", "text_nps_nine_fa"], 1):
        await send(client, name)  # ۹: a promoter
        await bot_api.wait_for("sendMessage", n, CHAT)
    await send(client, "text_resolved_no_fa")
    await handled(client, 2)  # the two answers (the only events it asked for)
    assert bot_api.sent("sendMessage", MANAGER) == []
    assert len(bot_api.sent("sendMessage", CHAT)) == 3


async def test_a_bot_api_failure_delays_the_alert_but_never_loses_it(
    seda: MakeClient, bot_api: FakeBotApi, tmp_path: Any
) -> None:
    bot_api.fail_next("sendMessage", 500, "Internal Server Error", chat_id=MANAGER)
    client = await seda_with_alerts(seda, bot_api, tmp_path)
    await send(client, "start_post_call_nps_fa")
    await send(client, "callback_nps_3")
    first, second = await bot_api.wait_for("sendMessage", 2, MANAGER)
    assert first == second  # refused with a 500, then the outbox's retry was delivered
    await handled(client, 1)
    assert client.app[FORWARDER].failures["manager"] == 1
    await asyncio.sleep(0.3)
    assert len(bot_api.sent("sendMessage", MANAGER)) == 2  # no third: delivered once


async def test_context_and_the_address_only_when_opted_in(
    seda: MakeClient, bot_api: FakeBotApi, tmp_path: Any
) -> None:
    client = await seda_with_alerts(seda, bot_api, tmp_path, include_address=True)
    body = {"survey": "post_call_nps", "respondent": f"telegram:{CHAT}", "language": "fa",
            "channel": "telegram", "context": {"agent": "a-17", "queue": "billing",
                                               "caller": "+989121234567"}}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()
    await send(client, "callback_nps_3")
    (alert,) = await bot_api.wait_for("sendMessage", 1, MANAGER)
    assert "agent: a-17 · queue: billing" in alert["text"]
    assert alert["text"].endswith(f"telegram:{CHAT}")  # opted in: the address is the last line
    assert "+989121234567" not in alert["text"]  # a context key not listed in context_keys


def answer(**changes: Any) -> dict[str, Any]:
    data = {"response_id": "r1", "survey_id": "post_call_nps", "question_id": "nps",
            "question_type": "nps", "value": 2, "language": "ar", "channel": "whatsapp",
            "provider": "support", "context": {"agent": "7"},
            "respondent": {"id": "r_abc", "addresses": ["whatsapp:+989121234567"]}}  # fmt: skip
    return {"id": "a1", "type": "answer.recorded", "data": {**data, **changes}}


@pytest.mark.parametrize(
    ("rules", "data", "alerts"),
    [
        ([{"question_type": "nps", "if": "value <= 6"}], {"value": 6}, True),
        ([{"question_type": "nps", "if": "value <= 6"}], {"value": 7}, False),
        ([{"question_type": "nps", "if": "value <= 6"}], {"question_type": "csat"}, False),
        ([{"survey": "other", "if": "value <= 6"}], {}, False),
        ([{"question": "resolved", "if": "value == false"}],
         {"question_id": "resolved", "question_type": "yes_no", "value": False}, True),
        ([{"if": "value <= 2 and context.agent == \"7\""}], {}, True),
        ([{"if": "value <= 2 and channel == \"telegram\""}], {}, False),
    ],
)  # fmt: skip
async def test_rules(
    bot_api: FakeBotApi, rules: list[dict[str, Any]], data: dict[str, Any], alerts: bool
) -> None:
    backend = build_backend("manager", alert_spec(bot_api, rules=rules), clock=system_clock)
    try:
        await backend.deliver(answer(**data))
    finally:
        await backend.close()
    assert len(bot_api.sent("sendMessage", MANAGER)) == int(alerts)


async def test_once_per_response_and_templates_per_language(bot_api: FakeBotApi) -> None:
    message = {
        "en": "{survey}/{question}={score} agent {agent}",
        "ar": "{question}={score} ({queue})",
    }
    spec = alert_spec(bot_api, message=message, rules=[{"if": "value <= 6 or value == false"}])
    backend = build_backend("manager", spec, clock=system_clock)
    assert isinstance(backend, TelegramAlert)
    try:
        await backend.deliver(answer())
        await backend.deliver(answer())  # the same event again (an outbox retry)
        await backend.deliver({**answer(question_id="resolved", value=False), "id": "a2"})
        await backend.deliver(answer(response_id="r2", language="ko", value=True))  # no rule
        await backend.deliver(answer(response_id="r3", language="ko", value=0))
        await backend.deliver({"id": "e", "type": "response.completed", "data": {}})
    finally:
        await backend.close()
    texts = [m["text"] for m in bot_api.sent("sendMessage", MANAGER)]
    assert texts == ["nps=٢ (-)", "post_call_nps/nps=0 agent 7"]  # ko: the default (en)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"token": None}, "token"),
        ({"chat_id": "manager group"}, "chat_id"),
        ({"chat_id": True}, "chat_id"),
        ({"rules": []}, "rules"),
        ({"rules": [{"question_type": "nps"}]}, "if"),
        ({"rules": [{"if": "value <="}]}, "rules\\[0\\].if"),
        ({"rules": [{"if": "value < 3", "threshold": 3}]}, "unknown key"),
        ({"message": {"en": "{score} {address}"}}, "include_address"),
        ({"message": {"en": "{score} {phone}"}}, "unknown placeholder"),
        ({"message": "score"}, "message"),
        ({"language": "de"}, "language"),
        ({"base_url": "ftp://x"}, "base_url"),
    ],
)
def test_config_errors(bot_api: FakeBotApi, change: dict[str, Any], problem: str) -> None:
    spec = {k: v for k, v in {**alert_spec(bot_api), **change}.items() if v is not None}
    with pytest.raises(ValueError, match=problem):
        build_backend("manager", spec, clock=system_clock)


async def test_failures_are_typed_and_hide_the_token(bot_api: FakeBotApi) -> None:
    backend = build_backend("manager", alert_spec(bot_api), clock=system_clock)
    try:
        bot_api.fail_next("sendMessage", 400, "Bad Request: chat not found")
        with pytest.raises(DeliveryError) as caught:
            await backend.deliver(answer())
        assert not caught.value.retryable and TOKEN.split(":")[1] not in str(caught.value)
        assert TOKEN not in repr(backend)
    finally:
        await backend.close()
