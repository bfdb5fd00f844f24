"""Logs are JSON lines with personal data redacted."""

from __future__ import annotations

import json
import logging

import pytest

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


def test_formatter_redacts_fields_and_drops_message_text() -> None:
    record = logging.LogRecord(
        "seda", logging.INFO, __file__, 1, "reply from %s", ("a@b.ir",), None
    )
    record.__dict__.update(fields(text="بله، خیلی خوب", address="tel:+98912", survey="nps"))
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "reply from <email>"
    assert line["text"] == "<redacted>" and line["address"] == "<redacted>"
    assert line["survey"] == "nps"
