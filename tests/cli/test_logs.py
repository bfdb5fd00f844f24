"""Logs are JSON lines with personal data redacted."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import logs
from gateway.logs import JsonFormatter, fields, redact


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("from tel:+989121234567 ok", "+989121234567"),
        ("call ۰۹۱۲۱۲۳۴۵۶۷ now", "۰۹۱۲۱۲۳۴۵۶۷"),
        ("mail ali.rezaei+x@example.ir", "ali.rezaei+x@example.ir"),
        ("whatsapp:+971501234567", "971501234567"),
    ],
)
def test_redact(text: str, hidden: str) -> None:
    assert hidden not in redact(text)


def test_ids_stay_whole_beside_a_phone_number() -> None:
    """An event id names the webhook-id a CEM received: its digit runs are not a phone number."""
    event_id = "01a25149-cc68-7000-b931-e75a5545745b"
    assert redact(f"event {event_id} for tel:+989121234567") == f"event {event_id} for <phone>"


def test_formatter_redacts_fields_and_drops_message_text() -> None:
    record = logging.LogRecord(
        "seda", logging.INFO, __file__, 1, "reply from %s", ("a@b.ir",), None
    )
    record.__dict__.update(fields(text="بله، خیلی خوب", address="tel:+98912", survey="nps"))
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "reply from <email>"
    assert line["text"] == "<redacted>" and line["address"] == "<redacted>"
    assert line["survey"] == "nps"


def test_credentials_are_redacted_whatever_their_field_is_called() -> None:
    record = logging.LogRecord("seda", logging.INFO, __file__, 1, "set up", (), None)
    names = ("auth_token", "api_key", "app_secret", "SMTP_PASSWORD", "access_token")
    record.__dict__.update(fields(**dict.fromkeys(names, "hunter2"), authenticity="record"))
    line = json.loads(JsonFormatter().format(record))
    assert all(line[name] == "<redacted>" for name in names)
    assert line["authenticity"] == "record"  # not a credential: kept


async def test_a_request_aiohttp_cannot_parse_is_logged_without_its_text(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's own error record quotes the bad request line or header (a bearer token here);
    `setup` keeps only its kind, as a warning."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.setup("INFO")
    root.addHandler(caplog.handler)
    try:
        server = await aiohttp_server(web.Application())
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer TOKEN-IN-A-BAD-HEADER\x7f\r\n\r\n")  # fmt: skip
        assert b" 400 " in await reader.readline()
        writer.close()
        await asyncio.sleep(0.1)
    finally:
        root.handlers[:], root.level = handlers, level
    (record,) = [r for r in caplog.records if r.name == "aiohttp.server"]
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["event"] == "malformed HTTP request refused"
    assert line["error"] == "BadHttpMessage" and line["status"] == 400
    assert "TOKEN-IN-A-BAD-HEADER" not in JsonFormatter().format(record)


async def test_a_url_in_an_error_keeps_its_host_and_loses_its_path_and_query(
    aiohttp_server: Any,
) -> None:
    """Some providers put the key in the URL (Kavenegar's path, a bot token, a CEM webhook with
    a token in its path or query): aiohttp's own error quotes the whole URL. A log keeps only
    where it went."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = await aiohttp_server(app)
    url = server.make_url("/v1/KAVE-SECRET-KEY/sms/send.json").with_query(receptor="09121234567")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        try:
            response.raise_for_status()
        except aiohttp.ClientResponseError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "seda.sms", logging.ERROR, __file__, 1, "send to %s failed", (str(url),), exc_info
    )
    record.__dict__.update(fields(url=f"https://user:pass@{server.host}/hook?token=T0KEN"))
    formatted = JsonFormatter().format(record)
    for secret in ("KAVE-SECRET-KEY", "09121234567", "T0KEN", "pass@"):
        assert secret not in formatted, formatted
    line = json.loads(formatted)
    assert f"http://{server.host}:{server.port}/…" in line["detail"]
    assert line["event"] == f"send to http://{server.host}:{server.port}/… failed"
