"""Every question type as buttons: what each fake provider API receives, one table for both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway import engine
from gateway.model import Inbound
from gateway.router import Gateway
from gateway.server import GATEWAY
from social import telegram_send
from social.telegram import TelegramChannel
from social.whatsapp import WhatsAppChannel
from tests.social.conftest import TEST_FLOWS, Client, MakeClient, telegram_spec
from tests.social.fake_telegram import SECRET, FakeBotApi, update
from tests.social.fake_whatsapp import FakeGraphApi, payload, signature
from tests.social.test_whatsapp import whatsapp_spec

STARS = ["⭐" * n for n in range(1, 6)]
CSAT_FA = [f"{s} {w}" for s, w in zip(STARS, ["خیلی ناراضی", "ناراضی", "معمولی", "راضی", "خیلی راضی"], strict=True)]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One question of tests/data/telegram/flows/rated_visit.yaml and how each channel shows it."""

    question: str
    language: str
    telegram: list[list[tuple[str, str]]] | None  # inline keyboard rows of (data, label)
    whatsapp: tuple[str, list[list[tuple[str, str]]], str | None]  # kind, rows, list button


def numbers(low: int, high: int, digits: str = "0123456789") -> list[tuple[str, str]]:
    table = str.maketrans("0123456789", digits)
    return [(str(n), str(n).translate(table)) for n in range(low, high + 1)]


FA = "۰۱۲۳۴۵۶۷۸۹"
CASES = [
    Case("stars", "en", [[(str(n), STARS[n - 1])] for n in range(1, 6)],
         ("list", [[(str(n), STARS[n - 1]) for n in range(1, 6)]], "1–5")),
    Case("effort", "fa", [numbers(1, 4, FA), numbers(5, 7, FA)],
         ("list", [numbers(1, 7, FA)], "۱–۷")),
    Case("ten_point", "en", [numbers(1, 5), numbers(6, 10)],
         ("list", [numbers(1, 10)], "1–10")),
    Case("tiny", "en", [numbers(0, 2)], ("button", [numbers(0, 2)], None)),
    Case("percent", "en", None, ("text", [], None)),  # 101 points: typed
    Case("visits", "fa", None, ("text", [], None)),  # a number question: typed
    Case("satisfaction", "fa", [[(str(n), CSAT_FA[n - 1])] for n in range(1, 6)],
         ("list", [[(str(n), CSAT_FA[n - 1]) for n in range(1, 6)]], "۱–۵")),
]  # fmt: skip


@dataclass(frozen=True)
class Visit:
    """The gateway, and an open rated_visit response whose prompts the cases send."""

    gateway: Gateway
    response_id: str


@pytest.fixture
async def visit(seda: MakeClient) -> Visit:
    client = await seda(flows=TEST_FLOWS)
    gateway: Gateway = client.app[GATEWAY]
    start = Inbound("start", "api", "api", "api:visit", gateway.clock(), survey_id="rated_visit")
    result = await gateway.invite(start)
    return Visit(gateway, str(result.response_id))


@pytest.fixture
def gateway(visit: Visit) -> Gateway:
    return visit.gateway


@pytest.fixture
async def telegram(gateway: Gateway, bot_api: FakeBotApi) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(gateway, telegram_spec(bot_api))
    await channel.start()
    yield channel
    await channel.stop()
    await channel.close()


@pytest.fixture
async def whatsapp(gateway: Gateway, graph_api: FakeGraphApi) -> AsyncIterator[WhatsAppChannel]:
    channel = WhatsAppChannel(gateway, whatsapp_spec(graph_api))
    yield channel
    await channel.close()


def event(visit: Visit, case: Case, channel: str, address: str) -> dict[str, Any]:
    """The outbound event the router stores for this question's prompt (bounds: not in it)."""
    question = visit.gateway.surveys["rated_visit"].question(case.question)
    prompt = engine.prompt_for(question, case.language).to_json()
    data = {"channel": channel, "provider": "support", "address": address, "response_id": visit.response_id,
            "language": case.language, "prompts": [prompt]}  # fmt: skip
    return {"id": f"evt-{case.question}", "type": f"outbound.{channel}", "data": data}


@pytest.mark.parametrize("case", CASES, ids=[c.question for c in CASES])
async def test_telegram_keyboard(
    case: Case, visit: Visit, telegram: TelegramChannel, bot_api: FakeBotApi
) -> None:
    await telegram.deliver(event(visit, case, "telegram", "telegram:5550001"))
    (sent,) = bot_api.sent("sendMessage")
    if case.telegram is None:
        assert "reply_markup" not in sent
        return
    rows = sent["reply_markup"]["inline_keyboard"]
    assert [[(b["callback_data"], b["text"]) for b in row] for row in rows] == case.telegram
    assert all(len(row) <= 6 for row in rows)


@pytest.mark.parametrize("case", CASES, ids=[c.question for c in CASES])
async def test_whatsapp_interactive(
    case: Case, visit: Visit, whatsapp: WhatsAppChannel, graph_api: FakeGraphApi
) -> None:
    await whatsapp.deliver(event(visit, case, "whatsapp", "whatsapp:+989121234567"))
    kind, rows, button = case.whatsapp
    (sent,) = graph_api.messages
    if kind == "text":
        assert sent["type"] == "text"
        return
    interactive = sent["interactive"]
    assert (sent["type"], interactive["type"]) == ("interactive", kind)
    if kind == "button":
        buttons = interactive["action"]["buttons"]
        assert [[(b["reply"]["id"], b["reply"]["title"]) for b in buttons]] == rows
        assert len(buttons) <= 3
        return
    sections = interactive["action"]["sections"]
    assert [[(r["id"], r["title"]) for r in s["rows"]] for s in sections] == rows
    assert sum(len(s["rows"]) for s in sections) <= 10
    assert interactive["action"]["button"] == button


async def test_a_rating_id_used_by_two_surveys_takes_the_bounds_of_the_response(
    seda: MakeClient, bot_api: FakeBotApi, graph_api: FakeGraphApi
) -> None:
    """rated_branch's ten_point is 0-4, rated_visit's 1-10: the response decides."""
    client: Client = await seda(
        flows=TEST_FLOWS, telegram=telegram_spec(bot_api), whatsapp=whatsapp_spec(graph_api)
    )
    responses = []
    for respondent, channel in (("telegram:5550001", "telegram"),
                                ("whatsapp:+989121234567", "whatsapp")):  # fmt: skip
        body = {"survey": "rated_branch", "respondent": respondent, "channel": channel}
        resp = await client.post("/api/v1/invitations", json=body)
        assert resp.status == 201, await resp.text()
        responses.append((await resp.json())["response_id"])
    (sent,) = await bot_api.wait_for("sendMessage", 1)
    assert [[b["callback_data"] for b in row] for row in sent["reply_markup"]["inline_keyboard"]] == [
        ["0", "1", "2", "3", "4"]]  # fmt: skip
    (listed,) = await graph_api.wait_for(1)
    rows = listed["interactive"]["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]

    # A button of the keyboard answers it; one that is not on it (99) is refused.
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    forged = await client.post("/telegram/support", data=update("callback_forged"), headers=headers)
    assert (await forged.json())["reason"] == "the button does not answer the current question"
    resp = await client.post("/telegram/support", data=update("callback_rating_4"), headers=headers)
    assert (await resp.json())["status"] == "accepted"
    raw = payload("list_reply_rating_4")
    resp = await client.post("/whatsapp/support", data=raw,
                             headers={"X-Hub-Signature-256": signature(raw)})  # fmt: skip
    assert (await resp.json())["status"] == "accepted"
    store = client.app[GATEWAY].store
    found = [a for r in responses for a in await store.answers_for(r)]
    assert [(a["channel"], a["question_id"], a["value"], a["input_mode"]) for a in found] == [
        ("telegram", "ten_point", 4, "button"), ("whatsapp", "ten_point", 4, "button")]  # fmt: skip


# Prompts whose keyboards telegram_send caches by what render.rows() reads, and prompts with
# fields of other types that it builds every time: the same keyboard either way.
KEYBOARD_PROMPTS: list[dict[str, Any]] = [
    {"kind": "prompt", "question_type": "nps", "language": "en"},
    {"kind": "prompt", "question_type": "nps", "language": "fa"},
    {"kind": "invalid", "question_type": "ces", "language": "ar"},
    {"kind": "notice", "question_type": "nps", "language": "en"},
    {"kind": "prompt", "question_type": "yes_no", "language": "ko"},
    {"kind": "prompt", "question_type": "csat", "language": "fa"},
    {"kind": "prompt", "question_type": "rating", "language": "en", "scale": [1, 5]},
    {"kind": "prompt", "question_type": "rating", "language": "en", "scale": [0, 3]},
    {"kind": "prompt", "question_type": "rating", "language": "en", "scale": [True, 3]},
    {"kind": "prompt", "question_type": "rating", "language": "en", "scale": [1.0, 3]},
    {"kind": "prompt", "question_type": "rating", "language": "en", "scale": [0, 100]},
    {"kind": "prompt", "question_type": "text", "language": "en"},
    {"kind": "prompt", "question_type": "choice", "language": "en",
     "choices": [{"code": "a", "label": "A"}, {"code": "b", "label": "B"}]},
    {"kind": "prompt", "question_type": "choice", "language": "en",
     "choices": [{"code": 1, "label": "One"}, {"code": True, "label": "One"}]},
    {"kind": "prompt", "question_type": "choice", "language": "en",
     "choices": [{"code": "x" * 65, "label": "too long"}]},
    {"kind": "prompt", "question_type": "nps", "language": None},
    {"kind": "prompt", "question_type": "nps"},
]  # fmt: skip


def test_cached_keyboards_are_the_ones_built_each_time() -> None:
    built = [telegram_send._keyboard(prompt) for prompt in KEYBOARD_PROMPTS]
    for _ in range(2):  # the first time fills the cache, the second reads it
        assert [telegram_send.keyboard(prompt) for prompt in KEYBOARD_PROMPTS] == built
    # Which have buttons at all: a key shared by prompts of different types would show here.
    assert [markup is not None for markup in built] == [True] * 3 + [False] + [True] * 4 + [
        False
    ] * 4 + [True] * 2 + [False] + [True] * 2
    assert len(set(built)) == 10 and built[-1] == built[-2] == built[0]
    cached = [telegram_send._keyboard_key(prompt) is not None for prompt in KEYBOARD_PROMPTS]
    assert cached == [True] * 8 + [False, False] + [True] * 3 + [False, True, False, True]
