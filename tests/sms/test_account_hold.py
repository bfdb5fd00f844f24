"""The account hold is the provider account's, not only the line's: lines that send with the
same credentials are one account at the provider, so a refusal of the account (credentials,
credit, a suspended or demo account) holds all of them at once, through the real app and a fake
provider API. A refusal of one line's own sender (its number) holds that line only."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.sms.helpers import invite, start, twilio_line
from tests.sms.test_send_errors import RESPONDENTS, twilio, until, vonage

REFUSED = (
    "sms line refused by its provider: its messages wait; check the line's credentials, credit"
    " and sender number"
)


def vonage_line(number: str, key: str = "abcd1234", hold: float = 60.0) -> dict[str, Any]:
    """A Vonage line; lines given the same key and secret are one Vonage account."""
    return {"provider": "vonage", "number": number, "api_key": key, "api_secret": "api-secret",
            "signature_secret": "s", "account_hold": hold}  # fmt: skip


def lines(hold: float = 60.0) -> dict[str, Any]:
    """a and b: one account, two numbers; c: another account."""
    return {
        "a": vonage_line("982191001234", hold=hold),
        "b": vonage_line("982191005678", hold=hold),
        "c": vonage_line("982191009999", key="efgh5678", hold=hold),
    }


async def sms_health(client: Any) -> dict[str, Any]:
    """/healthz's channels.sms."""
    body = await (await client.get("/healthz")).json()
    found: dict[str, Any] = body["channels"]["sms"]
    return found


async def refused_lines(client: Any) -> dict[str, Any]:
    """/healthz's channels.sms.refused_lines (empty when none)."""
    found: dict[str, Any] = (await sms_health(client)).get("refused_lines", {})
    return found


async def test_an_account_refusal_holds_every_line_with_the_same_credentials(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Vonage 9 (not enough credit, developer.vonage.com/en/api-errors/sms) refuses the
    account: line b, same api_key and api_secret as a, is held without asking Vonage again;
    line c, another account, still sends. One error is logged for the account."""
    caplog.set_level(logging.INFO)
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines())
    fake.fail.append(vonage("9", "Quota Exceeded - rejected"))
    await invite(client, RESPONDENTS[0], language="en", line="a")
    held = await until(lambda: _when(refused_lines(client), lambda r: "a" in r), "line a held")
    assert sorted(held) == ["a", "b"]
    assert held["a"]["since"] == held["b"]["since"] and held["b"]["sending"] == "refused"
    await invite(client, RESPONDENTS[1], language="en", line="b")
    await invite(client, RESPONDENTS[2], language="en", line="c")
    (sent,) = await fake.wait(1)
    await asyncio.sleep(0.3)
    assert sent["body"]["from"] == "982191009999" and len(fake.sent) == 1
    assert len(fake.refused) == 1  # b's message waits: Vonage was not asked again
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [REFUSED]
    metrics = await (await client.get("/metrics")).text()
    assert 'seda_sms_send_failures_total{kind="account",line="b"}' in metrics  # b's retries


def twilio_lines() -> dict[str, Any]:
    """Two numbers of one Twilio account (the same account_sid and auth_token)."""
    return {"a": twilio_line(number="+982191001234", public_url=None),
            "b": twilio_line(number="+982191005678", public_url=None)}  # fmt: skip


SENDERS = [
    # label, lines, the provider's answer, where the sent message names its sender
    ("vonage 15 sender", lines, vonage("15", "Illegal Sender Address - rejected"), "from"),
    ("twilio 21606 from number", twilio_lines,
     twilio(400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number"),
     "From"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "configured", "answer", "field"), SENDERS,
                         ids=[c[0] for c in SENDERS])  # fmt: skip
async def test_a_refused_sender_holds_only_its_line(
    label: str, configured: Any, answer: Any, field: str, tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:  # fmt: skip
    """Vonage 15 (a sender the account may not use) and Twilio 21606 (the From number cannot
    send SMS) are about line a's own number: line b of the same account still sends."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, configured())
    fake.fail.append(answer)
    await invite(client, RESPONDENTS[0], language="en", line="a")
    await until(lambda: _when(refused_lines(client), lambda r: "a" in r), "line a held")
    await invite(client, RESPONDENTS[1], language="en", line="b")
    (sent,) = await fake.wait(1)
    assert sent["body"][field].lstrip("+") == "982191005678"
    assert sorted(await refused_lines(client)) == ["a"]


async def test_a_send_that_goes_through_frees_every_line_of_the_account(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A send that goes through shows the account works again: it frees the account's other
    lines too (b, held for a minute, sends at once after a's short hold and good retry)."""
    configured = lines()
    configured["a"]["account_hold"] = 0.5
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, configured)
    fake.fail.append(vonage("4", "Bad Credentials"))
    await invite(client, RESPONDENTS[0], language="en", line="a")
    await until(lambda: _when(refused_lines(client), lambda r: "b" in r), "line b held")
    (first,) = await fake.wait(1, seconds=8.0)  # a's message, after a's hold
    assert first["body"]["from"] == "982191001234"
    sms = await until(lambda: _when(sms_health(client), lambda h: h["status"] == "ok"), "ok")
    assert "refused_lines" not in sms
    await invite(client, RESPONDENTS[1], language="en", line="b")
    sent = await fake.wait(2)
    assert sent[1]["body"]["from"] == "982191005678"


async def _when(value: Any, test: Any) -> Any:
    found = await value
    return found if test(found) else None
