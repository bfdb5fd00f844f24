"""Shared pieces of the SMS tests: payload files, a fake provider API on loopback, the app."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from gateway.config import load
from gateway.server import create_app
from tests.conftest import write_config

DATA = Path(__file__).resolve().parent.parent / "data" / "sms"
RECORDED = {"smsir": "smsir/receive_latest.json", "ghasedak": "ghasedak/received.json",
            "melipayamak": "melipayamak/get_messages.json"}  # fmt: skip
SENT = {"smsir": "smsir/send_bulk.json", "ghasedak": "ghasedak/send_single.json",
        "melipayamak": "melipayamak/send.json"}  # fmt: skip
PUBLIC = "https://seda.example.com"
TWILIO_ACCOUNT = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
TWILIO_TOKEN = "twilio-test-token"


@dataclass
class Payload:
    """A recorded provider request: method, path (with query), headers and raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> list[tuple[str, str]]:
        """The body as form pairs."""
        return parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)

    def with_form(self, **changes: str) -> Payload:
        """A copy whose form fields are changed (order kept, new ones appended)."""
        pairs = dict(self.form())
        pairs.update(changes)
        return Payload(self.method, self.path, dict(self.headers), urlencode(pairs).encode())


def payload(name: str) -> Payload:
    """tests/data/sms/<provider>/<file>: request line, headers, blank line, body."""
    raw = (DATA / name).read_bytes()
    head, _, body = raw.partition(b"\n\n")
    lines = head.decode("utf-8").splitlines()
    method, path = lines[0].split(" ", 1)
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Payload(method, path, headers, body.rstrip(b"\n"))


POLL_PATHS = {
    "/sms/receive.json": "kavenegar",
    "/v1/receive/latest": "smsir",
    "/GetReceivedSmses": "ghasedak",
    "/api/SendSMS/GetMessages": "melipayamak",
}
KEYS = {"smsir": "smsir-test-key", "ghasedak": "ghasedak-test-key"}


@dataclass
class FakeProviders:
    """Plays every provider's send API and the polled providers' inboxes; records the sends.

    `inbox` holds messages in each polled provider's own item shape (Kavenegar entries, SMS.ir
    data items, Ghasedak items, Melipayamak Data rows), wrapped in the envelope of the recorded
    answer under tests/data/sms/<provider>/. By default a poll hands them out once (the API
    marks them read); with `keeps_read` every poll returns them again, read by offset.
    """

    sent: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)  # messages not yet polled
    # Answers to the next sends, one each: a status, or a status and the JSON body to give.
    fail: list[int | tuple[int, Any]] = field(default_factory=list)
    fail_polls: list[int] = field(default_factory=list)  # statuses answered to the next polls
    fail_after_accept: list[int] = field(default_factory=list)  # accept, then answer this status
    keeps_read: bool = False  # the provider returns read messages again
    newest_first: bool = True  # the inbox order when read by offset
    polls: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)  # who, when, query
    served: list[tuple[float, int]] = field(default_factory=list)  # when, how many messages
    checks: list[dict[str, str]] = field(default_factory=list)  # Ghasedak CheckSmsStatus queries
    send_status: dict[str, tuple[int, str]] = field(default_factory=dict)  # provider -> answer
    refused: list[dict[str, Any]] = field(default_factory=list)  # sends answered with an error

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Record a send and answer as the provider would."""
        path = request.path
        for suffix, provider in POLL_PATHS.items():
            if path.endswith(suffix):
                return await self.poll(provider, request)
        if path.endswith("/CheckSmsStatus"):
            return self.check_status(request)
        if request.content_type == "application/json":
            body: Any = await request.json()
        else:
            body = dict(await request.post())
        record = {"method": request.method, "path": path, "query": dict(request.query),
                  "body": body, "headers": dict(request.headers)}  # fmt: skip
        if self.fail:
            status = self.fail.pop(0)
            if isinstance(status, tuple):  # the provider's own error body (and headers)
                self.refused.append(record)
                headers = status[2] if len(status) > 2 else None
                return web.json_response(status[1], status=status[0], headers=headers)
            if path.endswith("/sms/send.json"):  # Kavenegar repeats its code in return.status
                ret = {"status": status, "message": "failing as asked"}
                return web.json_response({"return": ret, "entries": None}, status=status)
            return web.Response(status=status, text="failing as asked")
        record["at"] = time.monotonic()  # when the provider got it (rate limit tests)
        self.sent.append(record)
        if self.fail_after_accept:  # accepted, but the answer is lost on the way back
            return web.Response(status=self.fail_after_accept.pop(0), text="answer lost")
        for suffix, provider in (("/v1/send/bulk", "smsir"), ("/SendSingleSMS", "ghasedak"),
                                 ("/api/SendSMS/SendSMS", "melipayamak")):  # fmt: skip
            if path.endswith(suffix):
                return self.send_answer(provider, request, record)
        if "Messages.json" in path:
            return web.json_response({"sid": "SM" + "0" * 32, "status": "queued"}, status=201)
        if path.endswith("/sms/send.json") and "kavenegar" in self.send_status:
            return self.send_answer("kavenegar", request, record)
        if path.endswith("/sms/send.json"):
            entry = {"messageid": 8792343, "status": 1, "receptor": body.get("receptor")}
            return web.json_response(
                {"return": {"status": 200, "message": "تایید شد"}, "entries": [entry]}
            )
        if path == "/sms/json":
            return web.json_response(
                {"message-count": "1", "messages": [{"status": "0", "message-id": "0A00000001"}]}
            )
        if "/Message/" in path:
            return web.json_response(
                {"api_id": "x", "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]},
                status=202,
            )
        if path == "/cgi-bin/sendsms":
            return web.Response(status=202, text="0: Accepted for delivery")
        if path == "/send":
            return web.Response(text='Success "b6ff2d35-27d0-4cd1-a5ec-2a2fa1a27c18"')
        return web.json_response({"status": "ok"})

    async def poll(self, provider: str, request: web.Request) -> web.Response:
        """One poll of a provider's inbox, checked for its credentials."""
        form = dict(await request.post()) if request.method == "POST" else {}
        query = {**request.query, **{k: str(v) for k, v in form.items()}}
        self.polls.append((provider, time.monotonic(), query))
        if self.fail_polls:
            return web.Response(status=self.fail_polls.pop(0), text="failing as asked")
        if provider in KEYS and KEYS[provider] not in request.headers.values():
            return web.Response(status=401, body=(DATA / "smsir/invalid_key.json").read_bytes(),
                                content_type="application/json")  # fmt: skip
        if provider == "kavenegar":
            entries, self.inbox[:] = list(self.inbox), []
            return web.json_response(
                {"return": {"status": 200, "message": "تایید شد"}, "entries": entries}
            )
        listed = self.inbox if self.newest_first else list(reversed(self.inbox))
        start = int(query.get("index", 0))
        count = int(query.get("count", 100))
        page = listed[start : start + count]
        self.served.append((time.monotonic(), len(page)))
        if not self.keeps_read:
            self.inbox[:] = [m for m in self.inbox if m not in page]
        envelope = json.loads((DATA / RECORDED[provider]).read_text("utf-8"))
        if provider == "smsir":
            envelope["data"] = page
        elif provider == "ghasedak":
            envelope["data"]["items"] = page
        else:
            envelope["Data"] = page
        return web.json_response(envelope, dumps=lambda d: json.dumps(d, ensure_ascii=False))

    def check_status(self, request: web.Request) -> web.Response:
        """Ghasedak CheckSmsStatus?Type=2&Ids=...: the sends with that ClientReferenceId."""
        self.checks.append(dict(request.query))
        envelope = json.loads((DATA / "ghasedak/check_status.json").read_text("utf-8"))
        ids = request.query.getall("Ids", [])
        template = envelope["data"][0]
        envelope["data"] = [
            {**template, "clientReferenceId": r["body"]["clientReferenceId"]}
            for r in self.sent
            if r["path"].endswith("/SendSingleSMS") and r["body"]["clientReferenceId"] in ids
        ]
        return web.json_response(envelope)

    def send_answer(
        self, provider: str, request: web.Request, record: dict[str, Any]
    ) -> web.Response:
        """The recorded answer of a provider's send API (or the one a test asked for)."""
        if provider in KEYS and KEYS[provider] not in request.headers.values():
            return web.Response(status=401, text="{}", content_type="application/json")
        status, name = self.send_status.get(provider) or (200, SENT[provider])
        return web.Response(status=status, body=(DATA / name).read_bytes(),
                            content_type="application/json")  # fmt: skip

    async def wait(self, count: int, seconds: float = 4.0) -> list[dict[str, Any]]:
        """The sends, once at least `count` arrived (fails after about `seconds`)."""
        for _ in range(int(seconds / 0.02)):
            if len(self.sent) >= count:
                return self.sent
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.sent)} of {count} messages were sent")


async def start(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, lines: dict[str, Any], **extra: Any
) -> tuple[Any, FakeProviders]:
    """The real app with the sms channel configured, and the fake provider API it sends to."""
    fake = FakeProviders()
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    for spec in lines.values():
        spec.setdefault("base_url", base)
        if spec.get("provider") == "generic":
            spec.setdefault("send_url", base + "/generic/send")
    sms = {"enabled": True, "lines": lines, **extra}
    path = write_config(tmp_path, channels={"api": {"enabled": True}, "sms": sms})
    client = await aiohttp_client(await create_app(load(path)))
    return client, fake


def twilio_line(**changes: Any) -> dict[str, Any]:
    """A Twilio line that answers in TwiML, behind the public URL https://seda.example.com."""
    line = {"provider": "twilio", "number": "+982191001234", "account_sid": TWILIO_ACCOUNT,
            "auth_token": TWILIO_TOKEN, "public_url": f"{PUBLIC}/sms/main", "footer": "لغو ۱۱"}  # fmt: skip
    line.update(changes)
    return line


async def invite(client: Any, address: str, **body: Any) -> dict[str, Any]:
    """POST /api/v1/invitations on the sms channel; returns the JSON answer."""
    data = {"survey": "post_call_nps", "respondent": address, "language": "fa", "channel": "sms",
            **body}  # fmt: skip
    resp = await client.post("/api/v1/invitations", json=data)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def answers(client: Any, response_id: str) -> dict[str, Any]:
    """GET /api/v1/responses/{id}."""
    resp = await client.get(f"/api/v1/responses/{response_id}")
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


def dumps(data: Any) -> bytes:
    """JSON as UTF-8 bytes, Persian kept readable."""
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
