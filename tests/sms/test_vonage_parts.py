"""Vonage concatenated SMS: parts are held on disk, so a restart between them loses nothing.

Signed part webhooks through the real app; the app is stopped and started again on the same
state folder, as a deploy or a crash would.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.server import GATEWAY
from tests.answer_schema import assert_valid_answer
from tests.sms.helpers import Payload, answers, invite, payload, start
from tests.sms.test_providers import RESPONDENT, lines, signed

# A reason too long for one UCS-2 SMS (70 characters): the phone sends it in two parts.
REASON = (
    "پشتیبانی خیلی دیر جواب داد و مجبور شدم سه بار تماس بگیرم تا کسی مشکل "
    "اینترنت خانه را بررسی کند؛ لطفاً زمان انتظار را کم کنید."
)
PARTS = (REASON[:67], REASON[67:])
IDS = ("0B00000000000A01", "0B00000000000A02")
REF = "77"


def part(number: int, total: int = 2) -> Payload:
    """Part `number` of the reason, as Vonage posts it (concat-ref 77)."""
    return payload("vonage/concat_part1.http").with_form(
        text=PARTS[number - 1], keyword=PARTS[number - 1].split()[0],
        messageId=IDS[number - 1], **{"concat-ref": REF, "concat-total": str(total),
                                      "concat-part": str(number)},
    )  # fmt: skip


def single(text: str, message_id: str) -> Payload:
    """A one-part message (the part's request without the concat fields)."""
    request = payload("vonage/concat_part1.http")
    pairs = {k: v for k, v in request.form() if not k.startswith("concat")}
    pairs.update(text=text, keyword=text, messageId=message_id)
    return Payload(request.method, request.path, request.headers, urlencode(pairs).encode())


async def post(client: Any, request: Payload) -> None:
    """Sign and send one webhook; Vonage needs a 2xx."""
    path, headers, body = signed(request, "vonage1", False)
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == 204, await resp.text()


def vonage(**changes: Any) -> dict[str, Any]:
    """The Vonage line of the provider tests, changed."""
    return {"vonage1": {**lines()["vonage1"], **changes}}


async def reason_asked(tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
                       **changes: Any) -> tuple[Any, Any, str]:  # fmt: skip
    """The app, invited and answered 3 (a detractor), so the next question is the reason."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, vonage(**changes))
    invited = await invite(client, RESPONDENT, line="vonage1")
    await post(client, single("۳", "0B00000000000001"))
    await fake.wait(2)  # the invitation, then the reason question
    return client, fake, invited["response_id"]


async def restart(tmp_path: Path, client: Any, aiohttp_client: Any, aiohttp_server: Any,
                  **changes: Any) -> tuple[Any, Any]:  # fmt: skip
    """Stop the app and start it again on the same database and state folder."""
    await client.close()
    return await start(tmp_path, aiohttp_client, aiohttp_server, vonage(**changes))


def recorded(state: dict[str, Any]) -> list[tuple[str, Any]]:
    """(question, value) of every answer, checked against the answer schema."""
    for answer in state["answers"]:
        assert_valid_answer(answer)
    return [(a["question_id"], a["value"]) for a in state["answers"]]


async def wait_answers(client: Any, response_id: str, count: int) -> dict[str, Any]:
    """The response once it has `count` answers (fails after about 5 s)."""
    for _ in range(250):
        state = await answers(client, response_id)
        if len(state["answers"]) >= count:
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(state['answers'])} of {count} answers were recorded")


async def test_parts_held_at_a_restart_complete_the_message(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _, response_id = await reason_asked(tmp_path, aiohttp_client, aiohttp_server)
    await post(client, part(1))  # acknowledged: Vonage will not send it again
    spool = Path(client.app[GATEWAY].store.folder) / "spool" / "sms-vonage1.parts"
    (held,) = spool.glob("*.part")  # on disk before the 204, readable by Seda's user only
    assert held.stat().st_mode & 0o777 == 0o600 and spool.stat().st_mode & 0o777 == 0o700
    client, fake = await restart(tmp_path, client, aiohttp_client, aiohttp_server)
    await post(client, part(2))
    state = await answers(client, response_id)
    assert recorded(state) == [("nps", 3), ("reason", REASON)]
    assert state["answers"][1]["message_id"] == IDS[0]  # the first part names the message
    await fake.wait(1)  # the next question (resolved), once
    assert len(fake.sent) == 1 and "آیا مشکل" in fake.sent[0]["body"]["text"]
    assert not list(spool.glob("*.part"))  # nothing left held
    ours = [r for r in caplog.records if r.name.startswith("seda")]
    assert any(r.getMessage() == "sms parts loaded" for r in ours)
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in ours)
    assert PARTS[0] not in logged and PARTS[1] not in logged and "989121234567" not in logged


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
async def test_parts_whose_rest_never_comes_are_recorded_as_they_are(
    restarted: bool, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """After concat_timeout, what came is recorded (joined in order), not dropped."""
    caplog.set_level(logging.WARNING)
    short = {"concat_timeout": 0.3}
    client, _, response_id = await reason_asked(tmp_path, aiohttp_client, aiohttp_server, **short)
    three = [part(1, total=3), part(2, total=3)]  # the third part never comes
    for request in reversed(three):
        await post(client, request)
    if restarted:
        client, _ = await restart(tmp_path, client, aiohttp_client, aiohttp_server, **short)
    state = await wait_answers(client, response_id, 2)
    assert recorded(state) == [("nps", 3), ("reason", REASON)]
    assert state["answers"][1]["message_id"] == IDS[0]
    for _ in range(50):  # logged once the core has committed: a read may come just before
        if any("incomplete" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    assert [r.getMessage() for r in caplog.records if "incomplete" in r.getMessage()] == [
        "sms parts expired incomplete: recorded what came"
    ]
    expired = next(r for r in caplog.records if "incomplete" in r.getMessage())
    assert (expired.__dict__["fields"]["parts"], expired.__dict__["fields"]["total"]) == (2, 3)


async def test_repeated_parts_add_no_text(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Vonage sends a part again when our 2xx was slow: before, during, after completion, and
    after a restart; the text is recorded once, and no repeat becomes a reply of its own."""
    client, _, response_id = await reason_asked(tmp_path, aiohttp_client, aiohttp_server)
    await post(client, part(1))
    await post(client, part(1))
    client, fake = await restart(tmp_path, client, aiohttp_client, aiohttp_server)
    await post(client, part(1))
    await post(client, part(2))
    await post(client, part(2))  # after the message was recorded
    short = {"concat_timeout": 0.3}
    client, fake = await restart(tmp_path, client, aiohttp_client, aiohttp_server, **short)
    await post(client, part(2))
    await asyncio.sleep(1.0)  # past concat_timeout: a repeat held as a new message would expire
    state = await answers(client, response_id)
    assert recorded(state) == [("nps", 3), ("reason", REASON)]
    assert not fake.sent  # nothing answered the next question (resolved) after the restart


async def test_a_new_message_under_a_held_reference_does_not_replace_the_held_parts(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """The reason comes in parts 1 and 2 of 3 (the third is lost); then the respondent's next
    message comes under the same concat-ref (phones reuse references) with other ids. The
    held parts are another message: recorded as they are, first (they answer the reason), not
    overwritten by the new message's parts."""
    client, _, response_id = await reason_asked(tmp_path, aiohttp_client, aiohttp_server)
    for request in (part(1, total=3), part(2, total=3)):
        await post(client, request)
    answer = ("بله", "0B00000000000B01")  # the next message: one part of 3 carries it all
    pieces = [(answer[0], answer[1]), ("", "0B00000000000B02"), ("", "0B00000000000B03")]
    for number, (text, message_id) in enumerate(pieces, start=1):
        await post(client, part(1, total=3).with_form(
            text=text, keyword=text, messageId=message_id, **{"concat-part": str(number)}))  # fmt: skip
    state = await wait_answers(client, response_id, 3)
    values = recorded(state)
    assert values[:2] == [("nps", 3), ("reason", REASON)], values
    assert state["answers"][1]["message_id"] == IDS[0]
    assert state["answers"][2]["message_id"] == answer[1]
    spool = Path(client.app[GATEWAY].store.folder) / "spool" / "sms-vonage1.parts"
    assert not list(spool.glob("*.part"))  # nothing left held
