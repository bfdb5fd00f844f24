"""Vonage, Plivo, Kannel, Jasmin and the generic gateway through the real app, one row per case."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from sms import generic, plivo, vonage
from tests.answer_schema import assert_valid_answer
from tests.sms.helpers import PUBLIC, Payload, answers, invite, payload, start

RESPONDENT = "tel:+989121234567"
VONAGE_SECRET = "vonage-signature-secret"
PLIVO_TOKEN = "plivo-auth-token"
GENERIC_SECRET = "generic-shared-secret"
NONCE = "05429567804466091622"


def lines() -> dict[str, Any]:
    """One line per provider, credentials made up for the tests."""
    return {
        "vonage1": {"provider": "vonage", "number": "982191001234", "api_key": "abcd1234",
                    "api_secret": "api-secret", "signature_secret": VONAGE_SECRET,
                    "signature_method": "sha256"},
        "plivo1": {"provider": "plivo", "number": "+982191001234", "auth_id": "MAXXXXXXXXXXXXXXXXXX",
                   "auth_token": PLIVO_TOKEN, "public_url": f"{PUBLIC}/sms/plivo1"},
        "kannel1": {"provider": "kannel", "number": "982191001234", "token": "kannel-token",
                    "username": "seda", "password": "kannel-pass", "footer": "لغو ۱۱"},
        "jasmin1": {"provider": "jasmin", "number": "982191001234", "token": "jasmin-token",
                    "username": "seda", "password": "jasmin-pass"},
        "gen1": {"provider": "generic", "number": "+982191001234", "secret": GENERIC_SECRET},
    }  # fmt: skip


def signed(request: Payload, line: str, forge: bool) -> tuple[str, dict[str, str], bytes]:
    """The request as the provider would send it: path, headers, body (forged on request)."""
    path, headers, body = request.path, dict(request.headers), request.body
    if line == "vonage1":
        base, _, query = path.partition("?")
        params = dict(parse_qsl(query if request.method == "GET" else body.decode()))
        params["timestamp"] = str(int(time.time()))
        secret = "wrong" if forge else VONAGE_SECRET
        params["sig"] = vonage.signature(params, secret, "sha256").upper()
        if request.method == "GET":
            return f"{base}?{urlencode(params)}", headers, b""
        return path, headers, urlencode(params).encode()
    if line == "plivo1":
        base = plivo.base_string("POST", PUBLIC + path, request.form())
        headers["X-Plivo-Signature-V3"] = plivo.signature(
            base, NONCE, "x" if forge else PLIVO_TOKEN
        )
        headers["X-Plivo-Signature-V3-Nonce"] = NONCE
    elif line == "gen1":
        stamp = str(int(time.time()))
        secret = "x" if forge else GENERIC_SECRET
        headers["X-Seda-Timestamp"] = stamp
        headers["X-Seda-Signature"] = generic.signature(secret, stamp, body)
    elif forge:  # Kannel and Jasmin: the token in the URL
        path = path.replace("-token", "-guess")
    return path, headers, body


CASES = [
    # label, line, payload, forged, status, response body, nps value, messages sent after
    ("vonage unicode GET", "vonage1", "vonage/inbound_fa.http", False, 204, "", 7, 2),
    ("vonage forged sig", "vonage1", "vonage/inbound_fa.http", True, 403, None, None, 1),
    ("vonage delivery receipt", "vonage1", "vonage/dlr.http", False, 204, "", None, 1),
    ("plivo sms", "plivo1", "plivo/inbound_fa.http", False, 200, "<Response></Response>", 6, 2),
    ("plivo forged", "plivo1", "plivo/inbound_fa.http", True, 403, None, None, 1),
    ("plivo status callback", "plivo1", "plivo/status.http", False, 200, "<Response></Response>", None, 1),
    ("kannel get-url", "kannel1", "kannel/get_inbound.http", False, 200, "متأسفیم", 5, 1),
    ("kannel ucs-2 get-url", "kannel1", "kannel/get_ucs2.http", False, 200, "متأسفیم", 5, 1),
    # %b, not %a: %a re-splits UCS-2 bytes at 0x20/0x0C, which breaks ZWNJ (U+200C)
    ("kannel ucs-2 %b with zwnj", "kannel1", "kannel/get_ucs2_zwnj.http", False, 200, "متأسفیم", 5, 1),
    ("kannel post-url", "kannel1", "kannel/post_inbound.http", False, 200, "آیا مشکل", 7, 1),
    ("kannel wrong token", "kannel1", "kannel/get_inbound.http", True, 403, None, None, 1),
    ("kannel dlr", "kannel1", "kannel/dlr.http", False, 200, "", None, 1),
    ("jasmin gsm", "jasmin1", "jasmin/inbound_gsm.http", False, 200, "ACK/Jasmin", 8, 2),
    ("jasmin ucs-2", "jasmin1", "jasmin/inbound_ucs2.http", False, 200, "ACK/Jasmin", 4, 2),
    # Jasmin without `binary` (issue jookies/jasmin#320): `content` is the UCS-2 bytes as sent
    ("jasmin ucs-2 no binary POST", "jasmin1", "jasmin/inbound_ucs2_no_binary.http", False, 200,
     "ACK/Jasmin", 9, 2),
    ("jasmin ucs-2 no binary GET", "jasmin1", "jasmin/get_ucs2_no_binary.http", False, 200,
     "ACK/Jasmin", 9, 2),
    ("jasmin wrong token", "jasmin1", "jasmin/inbound_gsm.http", True, 403, None, None, 1),
    ("jasmin dlr", "jasmin1", "jasmin/dlr.http", False, 200, "ACK/Jasmin", None, 1),
    ("generic json", "gen1", "generic/inbound.http", False, 200, '"reply": null', 10, 2),
    ("generic forged", "gen1", "generic/inbound.http", True, 403, None, None, 1),
    ("generic status", "gen1", "generic/status.http", False, 200, '"reply": null', None, 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "line", "name", "forge", "status", "body", "value", "sends"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_provider_webhook(
    label: str, line: str, name: str, forge: bool, status: int, body: str | None,
    value: int | None, sends: int, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
) -> None:  # fmt: skip
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    invited = await invite(client, RESPONDENT, line=line)
    await fake.wait(1)
    request = payload(name)
    path, headers, data = signed(request, line, forge)
    resp = await client.request(request.method, path, data=data, headers=headers)
    text = await resp.text()
    assert resp.status == status, text
    if body is not None:
        assert body in text if body else text == ""
    state = await answers(client, invited["response_id"])
    assert [a["value"] for a in state["answers"]] == ([value] if value is not None else [])
    for answer in state["answers"]:
        assert_valid_answer(answer)
        assert answer["provider"] == line.rstrip("1").replace("gen", "generic")
    sent = await fake.wait(sends)
    assert len(sent) == sends
    if sends == 2:  # the next prompt went through the provider's API
        assert_sent(line, sent[1])


def assert_sent(line: str, record: dict[str, Any]) -> None:
    """What each provider's API received for the next prompt."""
    body = record["body"]
    if line == "vonage1":
        assert record["path"] == "/sms/json" and body["type"] == "unicode"
        assert body["to"] == "989121234567" and body["client-ref"]
    elif line == "plivo1":
        assert record["path"] == "/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/"
        assert body["dst"] == "989121234567" and body["text"].startswith("متأسفیم")
    elif line == "jasmin1":
        assert record["path"] == "/send" and body["coding"] == "8"
        assert (
            bytes.fromhex(body["hex-content"])
            .decode("utf-16-be")
            .startswith(("آیا مشکل", "متأسفیم"))
        )
    elif line == "gen1":
        assert record["path"] == "/generic/send" and body["to"] == "+989121234567"
        assert record["headers"]["X-Seda-Signature"].startswith("sha256=")


@pytest.mark.parametrize(
    "name", ["jasmin/inbound_ucs2_no_binary.http", "jasmin/get_ucs2_no_binary.http"]
)
async def test_jasmin_ucs2_content_without_binary_is_read_whole(
    name: str, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Jasmin's deliverSmHttpThrower sends `content` as the SMS's own bytes, URL-encoded
    (jookies/jasmin jasmin/routing/throwers.py; issue #320 shows "تست" as %06%2A%063%06%2A),
    and versions before `binary` existed send nothing else: with coding 8 those bytes are
    UTF-16BE. Persian digits, ZWNJ and the Arabic comma come through intact."""
    client, _fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    invited = await invite(client, RESPONDENT, line="jasmin1")
    request = payload(name)
    resp = await client.request(request.method, request.path, data=request.body,
                                headers=request.headers)  # fmt: skip
    assert (resp.status, await resp.text()) == (200, "ACK/Jasmin")
    state = await answers(client, invited["response_id"])
    assert [(a["value"], a["raw"]) for a in state["answers"]] == [(9, "۹ خیلی\u200cخوب، ممنون")]


async def test_jasmin_ucs2_content_of_odd_length_is_refused(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Coding 8 with a `content` that is no UTF-16BE (an odd number of bytes): 400, nothing
    recorded (Jasmin retries it, then gives up)."""
    client, _fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    invited = await invite(client, RESPONDENT, line="jasmin1")
    request = payload("jasmin/inbound_ucs2_no_binary.http")
    body = request.body.replace(b"content=%06%F9", b"content=%F9")
    resp = await client.post(request.path, data=body, headers=request.headers)
    assert resp.status == 400
    assert (await answers(client, invited["response_id"]))["answers"] == []


async def test_vonage_concatenated_parts_are_one_answer(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    invited = await invite(client, RESPONDENT, line="vonage1")
    for name in ("vonage/concat_part2.http", "vonage/concat_part1.http"):  # out of order
        request = payload(name)
        path, headers, data = signed(request, "vonage1", False)
        resp = await client.post(path, data=data, headers=headers)
        assert resp.status == 204
    state = await answers(client, invited["response_id"])
    assert [(a["value"], a["message_id"]) for a in state["answers"]] == [(10, "0A0000000123ABCD2")]


@pytest.mark.parametrize(("language", "coding"), [("fa", "2"), ("en", None)])
async def test_kannel_reply_names_its_coding(
    language: str, coding: str | None, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """smsbox sends a text/plain reply as GSM 7-bit ("???" for Persian) unless X-Kannel-Coding
    says 2 (seen with Kannel 1.4.5: tests/sms/test_kannel_real.py)."""
    configured = lines()
    configured["kannel1"]["footer"] = ""  # the Persian footer alone would make it UCS-2
    client, _fake = await start(tmp_path, aiohttp_client, aiohttp_server, configured)
    await invite(client, RESPONDENT, line="kannel1", language=language)
    resp = await client.get(payload("kannel/get_ucs2_zwnj.http").path)
    assert resp.status == 200 and await resp.text()  # the next question, inline
    assert resp.headers.get("X-Kannel-Coding") == coding
    receipt = await client.get(payload("kannel/dlr.http").path)
    assert await receipt.text() == "" and "X-Kannel-Coding" not in receipt.headers


async def test_plivo_replay_with_the_uuid_stretched_over_the_next_field_is_refused(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Plivo V3 signs a POST's names and values run together, so a captured request still
    verifies with the next field folded into MessageUUID: a new id that de-duplication does
    not know. A MessageUUID is a UUID."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    invited = await invite(client, RESPONDENT, line="plivo1")
    await fake.wait(1)
    request = payload("plivo/inbound_fa.http")
    path, headers, data = signed(request, "plivo1", False)
    assert (await client.post(path, data=data, headers=headers)).status == 200
    pairs = dict(request.form())
    pairs["MessageUUID"] += "Text" + pairs.pop("Text")
    stretched = urlencode(pairs).encode()
    forged = parse_qsl(stretched.decode(), keep_blank_values=True)
    assert plivo.base_string("POST", PUBLIC + path, forged) == plivo.base_string(
        "POST", PUBLIC + path, request.form()
    )  # the captured signature still verifies
    replayed = await client.post(path, data=stretched, headers=headers)
    assert replayed.status == 400, await replayed.text()
    assert (await replayed.json())["reason"] == "MessageUUID is not a Plivo message UUID"
    assert [a["value"] for a in (await answers(client, invited["response_id"]))["answers"]] == [6]
