"""Delivery statuses of SMS.ir and Ghasedak, polled like Kavenegar's.

The fake provider API on loopback answers SMS.ir's GET /v1/send/{messageId} and Ghasedak's
GET CheckSmsStatus?Type=1&Ids=.. in the shapes of their SDKs (payloads under
tests/data/sms/receipts/), with the status code each message id has now; Seda's real app sends
through it, polls it, and the row in `deliveries` and seda_sms_receipts_total show the result.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import load
from gateway.server import create_app
from sms.base import PollError
from sms.ghasedak import Ghasedak
from sms.lines import make_line
from sms.smsir import SmsIr
from tests.conftest import write_config
from tests.sms.helpers import KEYS, FakeProviders, invite
from tests.sms.test_receipts import RECEIPTS, RESPONDENT, receipts_metric, sent_rows

SMSIR_REPORT = re.compile(r"/v1/send/(\d+)$")


@dataclass
class StatusProviders(FakeProviders):
    """The shared fake provider API, plus SMS.ir's report and Ghasedak's CheckSmsStatus by
    messageId, answering with `statuses` (the code each message id has now)."""

    statuses: dict[str, int] = field(default_factory=dict)
    status_queries: list[tuple[str, list[str]]] = field(default_factory=list)  # who, which ids
    refuse_key: bool = False  # answer status requests as if the API key were wrong

    async def handle(self, request: web.Request) -> web.Response:
        """Status requests here; sends and inbox polls as the shared fake does."""
        report = SMSIR_REPORT.search(request.path)
        if report and request.method == "GET":
            return self.smsir_report(request, report.group(1))
        if request.path.endswith("/CheckSmsStatus") and request.query.get("Type") == "1":
            return self.ghasedak_status(request)
        return await super().handle(request)

    def smsir_report(self, request: web.Request, message_id: str) -> web.Response:
        """SMS.ir GET /v1/send/{id}: the recorded report with this id's deliveryState."""
        self.status_queries.append(("smsir", [message_id]))
        if self.refuse_key or KEYS["smsir"] != request.headers.get("X-API-KEY"):
            return web.Response(status=401, body=(RECEIPTS.parent / "smsir/invalid_key.json")
                                .read_bytes(), content_type="application/json")  # fmt: skip
        if message_id not in self.statuses:  # a message SMS.ir does not report on
            return web.json_response({"status": 0, "message": "-", "data": None}, status=400)
        envelope = json.loads((RECEIPTS / "smsir_report.json").read_text("utf-8"))
        envelope["data"].update(messageId=int(message_id), deliveryState=self.statuses[message_id])
        return web.json_response(envelope, dumps=lambda d: json.dumps(d, ensure_ascii=False))

    def ghasedak_status(self, request: web.Request) -> web.Response:
        """Ghasedak CheckSmsStatus?Type=1&Ids=a&Ids=b: one item per id it knows."""
        ids = request.query.getall("Ids", [])
        self.status_queries.append(("ghasedak", ids))
        if self.refuse_key or KEYS["ghasedak"] != request.headers.get("ApiKey"):
            return web.json_response(
                {"isSuccess": False, "statusCode": 401, "message": "-"}, status=401
            )
        envelope = json.loads((RECEIPTS / "ghasedak_status.json").read_text("utf-8"))
        template = envelope["data"][0]
        envelope["data"] = [
            {**template, "messageId": i, "status": self.statuses[i]}
            for i in ids
            if i in self.statuses
        ]
        return web.json_response(envelope, dumps=lambda d: json.dumps(d, ensure_ascii=False))

    def asked(self, message_id: str) -> int:
        """How many status requests named this message id."""
        return sum(message_id in ids for _, ids in self.status_queries)


async def start(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, line: dict[str, Any]
) -> tuple[Any, StatusProviders]:
    """The real app with one polled line `ir1` behind the fake provider API."""
    fake = StatusProviders()
    server = await aiohttp_server(fake.app())
    line.setdefault("base_url", str(server.make_url("")).rstrip("/"))
    sms = {"enabled": True, "lines": {"ir1": line}}
    path = write_config(tmp_path, channels={"api": {"enabled": True}, "sms": sms})
    client = await aiohttp_client(await create_app(load(path)))
    return client, fake


SPECS = {
    "smsir": ({"api_key": KEYS["smsir"], "number": "30004505"}, "86522023"),
    "ghasedak": ({"api_key": KEYS["ghasedak"], "number": "210002100"}, "1234567890"),
}
CASES = [
    # provider, a code that is no news after Seda's own "sent", the final code, its status
    ("smsir", 5, 1, "delivered"),  # reached the operator, then delivered to the phone
    ("smsir", 3, 7, "failed"),  # processed at the telecom, then blacklisted
    ("smsir", 5, 2, "undelivered"),  # reached the operator, then not delivered to the phone
    ("ghasedak", 10, 14, "delivered"),  # sent to the provider, then delivered
    ("ghasedak", 11, 16, "failed"),  # reached the provider, then failed
    ("ghasedak", 4, 13, "undelivered"),  # sent, then not delivered
]


@pytest.mark.parametrize(
    ("provider", "interim", "final", "status"), CASES, ids=[f"{c[0]} {c[2]}" for c in CASES]
)
async def test_polled_status_moves_the_row_once_and_final_is_not_asked_again(
    provider: str, interim: int, final: int, status: str, tmp_path: Path, aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:  # fmt: skip
    spec, message_id = SPECS[provider]
    line = {"provider": provider, **spec, "poll_interval": 0.05, "status_interval": 0.05,
            "spool": str(tmp_path / "ir1.spool")}  # fmt: skip
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, line)
    invited = await invite(client, RESPONDENT, line="ir1")
    await fake.wait(1)
    (row,) = await sent_rows(client, invited["response_id"])
    assert (row["message_id"], row["provider"], row["status"]) == (message_id, provider, "sent")

    fake.statuses[message_id] = interim  # asked about, but nothing new: no receipt
    await until(lambda: fake.asked(message_id) >= 2)
    (row,) = await sent_rows(client, invited["response_id"])
    assert (row["status"], row["raw_status"]) == ("sent", None)

    fake.statuses[message_id] = final
    for _ in range(200):
        (row,) = await sent_rows(client, invited["response_id"])
        if row["status"] != "sent":
            break
        await asyncio.sleep(0.02)
    assert (row["status"], row["raw_status"], row["error"]) == (status, str(final), None)
    assert await receipts_metric(client, "ir1", status) == 1.0
    for other in ("sent", "queued", "unknown"):  # unchanged polls are not counted
        assert await receipts_metric(client, "ir1", other) == 0.0

    asked = len(fake.status_queries)
    await asyncio.sleep(0.3)  # several status rounds: a final row is not asked about again
    assert all(message_id not in ids for _, ids in fake.status_queries[asked:])
    if provider == "ghasedak":  # by messageId (Type 1), each id its own Ids parameter
        assert all(ids == [message_id] for _, ids in fake.status_queries)


async def test_refused_key_on_status_poll_changes_nothing(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    spec, message_id = SPECS["smsir"]
    line = {"provider": "smsir", **spec, "poll_interval": 0.05, "status_interval": 0.05}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, line)
    fake.refuse_key = True
    fake.statuses[message_id] = 1
    invited = await invite(client, RESPONDENT, line="ir1")
    await fake.wait(1)
    await until(lambda: fake.asked(message_id) >= 2)  # asked again each round, not given up
    (row,) = await sent_rows(client, invited["response_id"])
    assert (row["status"], row["raw_status"]) == ("sent", None)
    assert await receipts_metric(client, "ir1", "delivered") == 0.0


async def test_smsir_skips_an_id_it_does_not_report_and_reads_the_rest(
    aiohttp_server: Any,
) -> None:
    fake = StatusProviders(statuses={"86522024": 6, "86522025": 1})
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    line = make_line("ir1", {"provider": "smsir", "number": "30004505",
                             "api_key": KEYS["smsir"], "base_url": base})  # fmt: skip
    provider = SmsIr(line, lambda: 0.0)
    async with aiohttp.ClientSession() as http:
        receipts = await provider.statuses(http, ["86522023", "86522024", "86522025"])
        fake.refuse_key = True
        with pytest.raises(PollError) as refused:
            await provider.statuses(http, ["86522024"])
    got = [(r.message_id, r.status, r.raw_status) for r in receipts]
    assert got == [("86522024", "failed", "6"), ("86522025", "delivered", "1")]
    assert refused.value.auth and refused.value.status == 401


async def test_ghasedak_asks_by_message_id_and_refuses_a_failed_answer(
    aiohttp_server: Any,
) -> None:
    fake = StatusProviders(statuses={"1234567890": 14, "1234567891": 5})
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    line = make_line("ir1", {"provider": "ghasedak", "number": "210002100",
                             "api_key": KEYS["ghasedak"], "base_url": base})  # fmt: skip
    provider = Ghasedak(line, lambda: 0.0)
    ids = ["1234567890", "1234567891", "1234567892"]
    async with aiohttp.ClientSession() as http:
        receipts = await provider.statuses(http, ids)
        fake.refuse_key = True
        with pytest.raises(PollError) as refused:
            await provider.statuses(http, ids)
    assert fake.status_queries[0] == ("ghasedak", ids)
    got = [(r.message_id, r.status, r.raw_status) for r in receipts]
    # 5 is Ghasedak's debug mode (nothing sent): unknown, which never moves a row.
    assert got == [("1234567890", "delivered", "14"), ("1234567891", "unknown", "5")]
    assert refused.value.auth


async def until(condition: Any) -> None:
    """Wait until `condition()` holds (fails after about 4 s)."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true")


def test_a_line_never_shows_its_credentials_in_a_repr() -> None:
    line = make_line(
        "ir1", {"provider": "smsir", "number": "30004505", "api_key": "SMSIR-KEY-1"}, 10
    )
    assert "SMSIR-KEY-1" not in repr(line) and "ir1" in repr(line)
