"""What a refused send does, provider by provider, through the real app and a fake provider API
answering with the provider's own error: a refused account (credentials, credit) is retried,
holds the line and shows in the logs, /healthz and /metrics; a refused message goes to the dead
letter at once; throttling is retried."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.server import GATEWAY
from tests.sms.helpers import invite, start, twilio_line

RESPONDENTS = ["tel:+989121234567", "tel:+989121234568", "tel:+989121234569"]
SECRETS = ("twilio-test-token", "api-secret", "plivo-auth-token", "kannel-pass", "jasmin-pass",
           "generic-shared-secret", "kav-test-key", "smsir-test-key")  # fmt: skip


def line(provider: str) -> dict[str, Any]:
    """One line of this provider, credentials made up for the tests."""
    if provider == "twilio":
        return twilio_line(public_url=None)
    return {
        "vonage": {"provider": "vonage", "number": "982191001234", "api_key": "abcd1234",
                   "api_secret": "api-secret", "signature_secret": "s"},
        "plivo": {"provider": "plivo", "number": "+982191001234", "auth_id": "MAXXXXXXXXXXXXXXXXXX",
                  "auth_token": "plivo-auth-token"},
        "kannel": {"provider": "kannel", "number": "982191001234", "token": "t",
                   "username": "seda", "password": "kannel-pass"},
        "jasmin": {"provider": "jasmin", "number": "982191001234", "token": "t",
                   "username": "seda", "password": "jasmin-pass"},
        "generic": {"provider": "generic", "number": "+982191001234",
                    "secret": "generic-shared-secret"},
        "kavenegar": {"provider": "kavenegar", "number": "10004346", "api_key": "kav-test-key"},
        "smsir": {"provider": "smsir", "number": "30004505000017", "api_key": "smsir-test-key"},
    }[provider]  # fmt: skip


def vonage(status: str, text: str) -> tuple[int, dict[str, Any]]:
    """Vonage answers 200 whatever happened; each message's status says (api-errors/sms)."""
    return 200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]}


def twilio(http: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    """Twilio's REST error body (twilio.com/docs/usage/twilios-response#response-formats)."""
    more = f"https://www.twilio.com/docs/errors/{code}"
    return http, {"code": code, "message": message, "more_info": more, "status": http}


def kavenegar(status: int) -> tuple[int, dict[str, Any]]:
    """Kavenegar repeats its code in return.status."""
    return status, {"return": {"status": status, "message": "خطا"}, "entries": None}


CASES = [
    # label, provider, the provider's answer, what Seda makes of it
    ("twilio 20003 credentials", "twilio", twilio(401, 20003, "Authenticate"), "account"),
    ("twilio 21606 from number", "twilio",
     twilio(400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number"),
     "account"),
    ("twilio 21211 invalid to", "twilio",
     twilio(400, 21211, "The 'To' number is not a valid phone number."), "message"),
    ("twilio 21610 opted out", "twilio",
     twilio(400, 21610, "Attempt to send to unsubscribed recipient"), "message"),
    ("twilio 20429 throttled", "twilio", twilio(429, 20429, "Too Many Requests"), "retried"),
    ("vonage 4 credentials", "vonage", vonage("4", "Bad Credentials"), "account"),
    ("vonage 9 credit", "vonage", vonage("9", "Quota Exceeded - rejected"), "account"),
    ("vonage 8 suspended", "vonage", vonage("8", "Account suspended"), "account"),
    ("vonage 3 invalid to", "vonage", vonage("3", "Invalid to address"), "message"),
    ("vonage 7 barred", "vonage", vonage("7", "Number barred"), "message"),
    ("vonage 1 throttled", "vonage", vonage("1", "Throughput Rate Exceeded"), "retried"),
    # developer.vonage.com messaging/sms/guides/troubleshooting-sms (Nexmo/station
    # _documentation/en/messaging/sms/guides/troubleshooting-sms.md): 29 the account is in demo
    # mode, top it up; 32 a signed request may not present an api_secret (the account's
    # signing setting): every message would fail the same way. 33 the number is de-activated.
    ("vonage 29 demo account", "vonage", vonage("29", "Non White-listed Destination - rejected"),
     "account"),
    ("vonage 32 signature and secret", "vonage",
     vonage("32", "Signature And API Secret Disallowed"), "account"),
    ("vonage 23 callback url", "vonage", vonage("23", "Invalid Callback Url"), "account"),
    ("vonage 33 deactivated", "vonage", vonage("33", "Number De-activated"), "message"),
    ("plivo 401", "plivo", (401, {"api_id": "x", "error": "authentication failed"}), "account"),
    ("plivo 400 dst", "plivo", (400, {"api_id": "x", "error": "invalid dst"}), "message"),
    ("kannel 403", "kannel", (403, {}), "account"),
    ("jasmin 403", "jasmin", (403, {}), "account"),
    ("generic 401", "generic", (401, {}), "account"),
    ("generic 503", "generic", (503, {}), "retried"),
    ("kavenegar 418 credit", "kavenegar", kavenegar(418), "account"),
    ("kavenegar 411 receptor", "kavenegar", kavenegar(411), "message"),
    ("smsir 401", "smsir", (401, {"status": 0, "message": "کلید نامعتبر", "data": None}),
     "account"),
]  # fmt: skip


async def until(check: Any, what: str) -> Any:
    """Wait (about 6 s at most) until `check()` gives something true; that value."""
    for _ in range(300):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


@pytest.mark.parametrize(("label", "provider", "answer", "kind"), CASES, ids=[c[0] for c in CASES])
async def test_a_refused_send(
    label: str,
    provider: str,
    answer: tuple[int, dict[str, Any]],
    kind: str,
    tmp_path: Path,
    aiohttp_client: Any,
    aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    spec = {**line(provider), "account_hold": 1.0}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"l1": spec})
    store = client.app[GATEWAY].store
    fake.fail.append(answer)
    await invite(client, RESPONDENTS[0], language="en")

    async def health() -> dict[str, Any]:
        body: dict[str, Any] = await (await client.get("/healthz")).json()
        return body

    async def dead() -> int:
        return int((await store.dead_count()).get("channel.sms", 0))

    if kind == "message":  # about this respondent: no retry can help, nothing else held
        await until(dead, "the message in the dead letter")
        assert fake.sent == [] and len(fake.refused) == 1
        assert (await health())["channels"]["sms"]["status"] == "ok"
        await invite(client, RESPONDENTS[1], language="en")  # the line still sends
        await fake.wait(1)
    elif kind == "retried":
        await fake.wait(1)
        assert await dead() == 0 and len(fake.refused) == 1
    else:  # the account: retried, the line held, and said loudly
        body = await until(
            lambda: _when(health(), lambda b: "refused_lines" in b["channels"]["sms"]),
            "/healthz naming the refused line",
        )
        assert body["status"] == "degraded"
        refused = body["channels"]["sms"]["refused_lines"]["l1"]
        assert refused["sending"] == "refused" and refused["since"]
        metrics = await (await client.get("/metrics")).text()
        assert 'seda_channel_up{channel="sms"} 0.0' in metrics
        assert 'seda_sms_send_failures_total{kind="account",line="l1"}' in metrics
        # Within the hold, the other respondents' messages wait without asking the provider.
        for respondent in RESPONDENTS[1:]:
            await invite(client, respondent, language="en")
        await asyncio.sleep(0.3)
        assert len(fake.refused) == 1 and fake.sent == []
        assert await dead() == 0
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.getMessage() for r in errors if r.name == "seda.sms"] == [
            "sms line refused by its provider: its messages wait; check the line's"
            " credentials, credit and sender number"
        ]
        # The account put right: everything waiting goes out, once each.
        await fake.wait(3)
        await asyncio.sleep(0.2)
        assert len(fake.sent) == 3 and await dead() == 0
        body = await until(
            lambda: _when(health(), lambda b: b["channels"]["sms"]["status"] == "ok"),
            "/healthz ok again",
        )
        assert "refused_lines" not in body["channels"]["sms"]
    ours = [r for r in caplog.records if not r.name.startswith("aiohttp")]  # not the fakes'
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    for secret in (*SECRETS, "9121234567"):
        assert secret not in logged, secret


async def _when(value: Any, test: Any) -> Any:
    found = await value
    return found if test(found) else None


async def test_account_hold_must_be_seconds(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="account_hold must be a number of seconds"):
        await start(tmp_path, aiohttp_client, aiohttp_server,
                    {"l1": {**line("generic"), "account_hold": "soon"}})  # fmt: skip


async def test_a_retry_after_given_as_a_date_is_honoured(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Retry-After may be an HTTP-date (RFC 9110 10.2.3), not only seconds: a provider that
    asks for an hour is not asked again within a second or two."""
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"l1": line("generic")})
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    fake.fail.append((429, {}, {"Retry-After": later}))
    await invite(client, RESPONDENTS[0], language="en")
    await until(lambda: _when(asyncio.sleep(0, len(fake.refused)), bool), "the 429")
    await asyncio.sleep(2.5)  # a retry without the hour would have come within this
    assert fake.sent == [] and len(fake.refused) == 1
