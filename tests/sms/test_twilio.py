"""Twilio webhooks through the real app: signatures, outcomes, TwiML, and a whole Persian survey."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.etree import ElementTree

import pytest

from sms.twilio import signature
from tests.answer_schema import assert_valid_answer
from tests.sms.helpers import (
    PUBLIC,
    TWILIO_TOKEN,
    Payload,
    answers,
    invite,
    payload,
    start,
    twilio_line,
)

RESPONDENT = "tel:+989121234567"


async def post(client: Any, request: Payload, sign: str | None = "valid") -> Any:
    """Send a recorded Twilio request, signed as Twilio would sign it (or not, or forged)."""
    headers = dict(request.headers)
    if sign is not None:
        token = TWILIO_TOKEN if sign == "valid" else "not-the-token"
        headers["X-Twilio-Signature"] = signature(PUBLIC + request.path, request.form(), token)
    return await client.request(request.method, request.path, data=request.body, headers=headers)


def message_text(twiml: str) -> str | None:
    """The text of TwiML's <Message>, if any."""
    root = ElementTree.fromstring(twiml)
    assert root.tag == "Response"
    found = root.find("Message")
    return found.text if found is not None else None


CASES = [
    # label, payload file, changes, signature, status, answers stored, nps value
    ("persian digit", "twilio/inbound_fa.http", {}, "valid", 200, 1, 9),
    ("arabic-indic digit", "twilio/inbound_ar_digits.http", {}, "valid", 200, 1, 8),
    ("status callback for a message not sent here", "twilio/status_delivered.http", {}, "valid", 200, 0, None),
    ("forged signature", "twilio/inbound_fa.http", {}, "forged", 403, 0, None),
    ("missing signature", "twilio/inbound_fa.http", {}, None, 403, 0, None),
    ("body changed after signing", "twilio/inbound_fa.http", {}, "tampered", 403, 0, None),
    ("no MessageSid", "twilio/no_sid.http", {}, "valid", 400, 0, None),
    ("JSON instead of a form", "twilio/json_body.http", {}, "valid", 400, 0, None),
    ("another account", "twilio/inbound_fa.http", {"AccountSid": "AC" + "1" * 32}, "valid", 403, 0, None),
    ("sender is not a number", "twilio/inbound_fa.http", {"From": "alice"}, "valid", 400, 0, None),
    ("oversized", "twilio/inbound_fa.http", {"Body": "۹" * 40_000}, "valid", 413, 0, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "name", "changes", "sign", "status", "stored", "value"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_twilio_webhook(
    label: str, name: str, changes: dict[str, str], sign: str | None, status: int, stored: int,
    value: int | None, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
) -> None:  # fmt: skip
    client, _fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    invited = await invite(client, RESPONDENT)
    request = payload(name)
    if changes:
        request = request.with_form(**changes)
    if sign == "tampered":  # signed by Twilio, then the answer was changed on the way
        headers = {
            **request.headers,
            "X-Twilio-Signature": signature(PUBLIC + request.path, request.form(), TWILIO_TOKEN),
        }
        resp = await client.post(
            request.path, data=request.with_form(Body="۰").body, headers=headers
        )
    else:
        resp = await post(client, request, sign)
    assert resp.status == status, await resp.text()
    state = await answers(client, invited["response_id"])
    assert len(state["answers"]) == stored
    if value is not None:
        answer = state["answers"][0]
        assert answer["value"] == value and answer["channel"] == "sms"
        assert answer["provider"] == "twilio" and answer["message_id"].startswith("SM")
        assert_valid_answer(answer)
        twiml = await resp.text()
        assert resp.content_type == "application/xml"
        assert message_text(twiml) == "آیا مشکل شما در این تماس حل شد؟ بله یا خیر\nلغو ۱۱"
    if status == 200 and value is None:
        assert message_text(await resp.text()) is None


async def test_unknown_line_is_ignored(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    request = payload("twilio/inbound_fa.http")
    resp = await client.post("/sms/nowhere", data=request.body, headers=request.headers)
    assert resp.status == 200
    assert await resp.json() == {"status": "ignored", "reason": "unknown line"}


async def test_every_request_is_verified_at_one_url(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    # The URL forms are worked out once per URL; each request's signature is still checked.
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    invited = await invite(client, RESPONDENT)
    request = payload("twilio/inbound_fa.http")
    signed = signature(PUBLIC + request.path, request.form(), TWILIO_TOKEN)
    headers = {**request.headers, "X-Twilio-Signature": signed}
    first = await client.post(request.path, data=request.body, headers=headers)
    assert first.status == 200, await first.text()
    other = request.with_form(Body="بله", MessageSid="SM" + "7" * 32)
    replayed = await client.post(request.path, data=other.body, headers=headers)
    assert replayed.status == 403  # the first request's signature does not sign this one
    ported = signature(PUBLIC + ":443" + request.path, other.form(), TWILIO_TOKEN)
    headers["X-Twilio-Signature"] = ported  # Twilio may sign https://host:443/...
    second = await client.post(request.path, data=other.body, headers=headers)
    assert second.status == 200, await second.text()
    values = [a["value"] for a in (await answers(client, invited["response_id"]))["answers"]]
    assert values == [9, True]


async def test_repeated_message_sid_gives_one_answer(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    invited = await invite(client, RESPONDENT)
    request = payload("twilio/inbound_fa.http")
    first = await post(client, request)
    again = await post(client, request)
    assert first.status == again.status == 200
    assert await first.text() == await again.text()  # Twilio retried: the same TwiML again
    assert len((await answers(client, invited["response_id"]))["answers"]) == 1


async def test_persian_survey_over_sms(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Invitation through the API, three answers by Twilio webhook, then «لغو»."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    invited = await invite(client, RESPONDENT, line="main", context={"agent": "42"})
    sent = await fake.wait(1)
    first = sent[0]
    assert first["path"] == "/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Messages.json"
    assert first["headers"]["Authorization"].startswith("Basic ")
    assert first["body"]["To"] == "+989121234567" and first["body"]["From"] == "+982191001234"
    assert first["body"]["Body"].startswith("از صفر تا ده")
    assert first["body"]["Body"].endswith("\nلغو ۱۱")

    base = payload("twilio/inbound_fa.http")
    replies = [("۳", "متأسفیم"), ("صف تلفن خیلی طولانی بود", "آیا مشکل"), ("خیر", "از اینکه وقت")]
    for n, (text, expected) in enumerate(replies):
        resp = await post(client, base.with_form(Body=text, MessageSid=f"SM{n:032d}"))
        assert resp.status == 200
        reply = message_text(await resp.text())
        assert reply is not None and reply.startswith(expected) and reply.endswith("لغو ۱۱")

    state = await answers(client, invited["response_id"])
    assert state["status"] == "completed"
    values = {a["question_id"]: a["value"] for a in state["answers"]}
    assert values == {"nps": 3, "reason": "صف تلفن خیلی طولانی بود", "resolved": False}
    for answer in state["answers"]:
        assert_valid_answer(answer)
        assert answer["language"] == "fa" and answer["context"] == {"agent": "42"}

    resp = await post(client, base.with_form(Body="لغو", MessageSid="SM" + "9" * 32))
    assert resp.status == 200
    assert message_text(await resp.text())  # the opt-out notice, in the TwiML
    await asyncio.sleep(0.3)  # let the forwarder run: webhook answers are not sent again
    assert len(fake.sent) == 1
    again = await client.post(
        "/api/v1/invitations",
        json={"survey": "post_call_nps", "respondent": RESPONDENT, "channel": "sms"},
    )
    assert again.status == 409  # opted out


async def test_opt_out_mid_survey_with_persian_11(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    invited = await invite(client, RESPONDENT)
    base = payload("twilio/inbound_fa.http")
    resp = await post(client, base.with_form(Body="۱۱", MessageSid="SM" + "1" * 32))
    assert resp.status == 200
    state = await answers(client, invited["response_id"])
    assert state["status"] == "abandoned" and state["answers"] == []


async def test_api_reply_mode_sends_prompts_through_the_api(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    line = twilio_line(reply="api", footer="")
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": line})
    await invite(client, RESPONDENT)
    resp = await post(client, payload("twilio/inbound_fa.http"))
    assert message_text(await resp.text()) is None
    sent = await fake.wait(2)
    assert sent[1]["body"]["Body"] == "آیا مشکل شما در این تماس حل شد؟ بله یا خیر"


async def test_a_replay_with_the_sid_stretched_over_the_next_field_is_refused(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Twilio signs the names and values run together (`MessageSidSM…NumMedia0`), so a captured
    request still verifies when the next field is folded into MessageSid: a new message id
    that de-duplication does not know. A MessageSid is two letters and 32 hex digits."""
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, {"main": twilio_line()})
    first = await invite(client, RESPONDENT)
    request = payload("twilio/inbound_fa.http")
    captured = signature(PUBLIC + request.path, request.form(), TWILIO_TOKEN)
    headers = {**request.headers, "X-Twilio-Signature": captured}
    assert (await client.post(request.path, data=request.body, headers=headers)).status == 200
    again = await invite(client, RESPONDENT)  # a later survey replaces the first
    assert again["response_id"] != first["response_id"]

    pairs = dict(request.form())
    pairs["MessageSid"] += "NumMedia" + pairs.pop("NumMedia")
    stretched = urlencode(pairs).encode()
    forged = parse_qsl(stretched.decode(), keep_blank_values=True)
    assert signature(PUBLIC + request.path, forged, TWILIO_TOKEN) == captured  # still verifies
    replayed = await client.post(request.path, data=stretched, headers=headers)
    assert replayed.status == 400, await replayed.text()
    assert (await replayed.json())["reason"] == "MessageSid is not a Twilio message SID"
    assert (await answers(client, again["response_id"]))["answers"] == []
