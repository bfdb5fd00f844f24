"""The webhook backend against a real receiver on loopback: headers, signature, status mapping."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.backends import DeliveryError, build_backend
from gateway.backends.webhook import WebhookBackend, redact_url, secret_key, sign
from gateway.config import ConfigError, load
from gateway.server import create_app
from tests.conftest import write_config
from tests.forwarder.receiver import Answer, Received, Receiver, key_of, verify

DATA = Path(__file__).resolve().parent.parent / "data" / "webhooks"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
EVENT = {
    "id": "0190a1b2-0000-7000-8000-000000000001",
    "type": "answer.recorded",
    "timestamp": "2024-05-01T09:30:00.000+00:00",
    "data": {"raw": "۹", "value": 9},
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    peer = Receiver(secret=SECRET, now=T0.timestamp)
    yield peer
    await peer.close()


def webhook(url: str, **spec: Any) -> WebhookBackend:
    backend = build_backend("crm", {"type": "webhook", "url": url, **spec}, clock=lambda: T0)
    assert isinstance(backend, WebhookBackend)
    return backend


def test_sign_reproduces_the_standard_webhooks_vector() -> None:
    vector = json.loads((DATA / "standard_webhooks_vector.json").read_text("utf-8"))
    got = sign(vector["secret"], vector["msg_id"], vector["timestamp"], vector["payload"])
    assert got == vector["signature"]
    # The test receiver's verifier, written from the spec, holds to the same vector.
    headers = {"webhook-id": vector["msg_id"], "webhook-timestamp": str(vector["timestamp"]),
               "webhook-signature": "v1a,ignored " + vector["signature"]}  # fmt: skip
    body = vector["payload"].encode()
    assert verify(key_of(vector["secret"]), headers, body, now=vector["timestamp"]) is None
    late = vector["timestamp"] + 301
    assert verify(key_of(vector["secret"]), headers, body, now=late) == (
        "webhook-timestamp outside the tolerance"
    )


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_not base64!", "not whsec_"),
        ("whsec_" + base64.b64encode(b"short").decode(), "5 bytes"),
    ],
)
def test_bad_secrets_are_refused_without_echoing_them(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        webhook("https://cem.example/hook", secret=secret)
    assert secret.removeprefix("whsec_") not in str(caught.value)


def test_an_unpadded_secret_gives_the_padded_ones_key() -> None:
    """The reference verifier pads the base64 itself, so receivers take both forms."""
    padded = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    assert padded.endswith("=")
    assert secret_key(padded.rstrip("=")) == secret_key(padded) == key_of(padded)


async def test_a_rotated_secret_signs_with_both_keys(receiver: Receiver) -> None:
    """Standard Webhooks' zero-downtime rotation: while both are configured, a receiver holding
    either key verifies, whichever it was given first."""
    new = "whsec_" + base64.b64encode(b"the-new-key-of-thirty-two-bytes!").decode()
    old = SECRET
    url = await receiver.start()
    backend = webhook(url, secret=[new, old, ""])  # an unset ${OLD:-} reads as empty: skipped
    try:
        await backend.deliver(EVENT)
    finally:
        await backend.close()
    (got,) = receiver.requests
    first = sign(new, got.webhook_id, int(got.timestamp), got.body)
    assert got.signature.count("v1,") == 2 and got.signature.startswith(first + " ")
    assert verify(key_of(old), got.headers, got.body, T0.timestamp()) is None
    assert verify(key_of(new), got.headers, got.body, T0.timestamp()) is None
    other = key_of("whsec_" + base64.b64encode(b"x" * 32).decode())
    assert verify(other, got.headers, got.body, T0.timestamp()) == "no matching signature"


def test_redact_url_drops_credentials_and_query() -> None:
    assert redact_url("https://u:p@cem.example:8443/in/seda?token=abc#x") == (
        "https://cem.example:8443/in/seda"
    )


async def test_delivery_is_signed_and_verifies_at_the_receiver(receiver: Receiver) -> None:
    url = await receiver.start()
    backend = webhook(url, secret=SECRET, timeout=2, headers={"Authorization": "Bearer t"})
    try:
        await backend.deliver(EVENT)
        await backend.deliver(EVENT)
    finally:
        await backend.close()
    first, again = receiver.requests
    assert first.signature_ok and again.signature_ok, first.problem
    assert first.webhook_id == again.webhook_id == EVENT["id"]
    assert first.timestamp == str(int(T0.timestamp()))
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Authorization"] == "Bearer t"
    assert first.event == EVENT
    assert "۹".encode() in first.body  # UTF-8 as is, not \\u escapes


@pytest.mark.parametrize("secret", [None, "", ["", ""]], ids=["none", "empty", "unset list"])
async def test_without_a_secret_no_signature_is_sent_and_a_warning_says_so(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, secret: Any
) -> None:
    backend = webhook(await receiver.start(), **({} if secret is None else {"secret": secret}))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "webhook backend has no secret: deliveries are unsigned"
    ]
    try:
        await backend.deliver(EVENT)
    finally:
        await backend.close()
    assert "webhook-signature" not in {k.lower() for k in receiver.requests[0].headers}
    assert receiver.requests[0].webhook_id == EVENT["id"]


# label, status, response headers, expected (None = success, else retryable, retry_after, disable)
CASES: list[tuple[str, int, dict[str, str], tuple[bool, float | None, bool] | None]] = [
    ("ok", 200, {}, None),
    ("accepted", 202, {}, None),
    ("gone", 410, {}, (False, None, True)),
    ("rate limited", 429, {"Retry-After": "7"}, (True, 7.0, False)),
    ("unavailable until a date", 503, {"Retry-After": "Wed, 01 May 2024 09:32:00 GMT"},
     (True, 120.0, False)),
    ("unavailable, bad date", 503, {"Retry-After": "soon"}, (True, None, False)),
    ("server error", 500, {}, (True, None, False)),
    ("request timeout", 408, {}, (True, None, False)),
    ("bad request", 400, {}, (False, None, False)),
    ("unauthorized: a secret rotated on one side", 401, {}, (True, None, False)),
    ("forbidden", 403, {}, (True, None, False)),
    ("not found: a route not deployed yet", 404, {}, (True, None, False)),
    ("unprocessable", 422, {}, (False, None, False)),
    ("unavailable, non-ASCII digits", 503, {"Retry-After": "٣٠"}, (True, None, False)),
    ("redirect", 301, {"Location": "http://127.0.0.1:1/x"}, (False, None, False)),
    ("temporary redirect", 307, {"Location": "/elsewhere"}, (False, None, False)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "status", "headers", "expected"), CASES, ids=[c[0] for c in CASES]
)
async def test_status_mapping(
    receiver: Receiver,
    label: str,
    status: int,
    headers: dict[str, str],
    expected: tuple[bool, float | None, bool] | None,
) -> None:
    async def answer(_: Received) -> Answer:
        return status, headers

    receiver.behaviour = answer
    backend = webhook(await receiver.start(), secret=SECRET)
    try:
        if expected is None:
            await backend.deliver(EVENT)
            return
        with pytest.raises(DeliveryError) as caught:
            await backend.deliver(EVENT)
    finally:
        await backend.close()
    error = caught.value
    assert (error.retryable, error.retry_after, error.disable) == expected
    assert str(status) in str(error)


async def test_a_redirect_is_not_followed_and_the_error_says_where_it_pointed(
    receiver: Receiver,
) -> None:
    async def moved(_: Received) -> Answer:
        return 308, {"Location": "https://new.example/in/seda?token=hush"}

    receiver.behaviour = moved
    backend = webhook(await receiver.start(), secret=SECRET)
    try:
        with pytest.raises(DeliveryError) as caught:
            await backend.deliver(EVENT)
    finally:
        await backend.close()
    assert len(receiver.requests) == 1
    assert str(caught.value) == (
        "HTTP 308 redirect to https://new.example/in/seda, not followed: update the backend's url"
    )


async def test_a_2xx_whose_body_is_cut_short_is_delivered() -> None:
    """The status is the receiver's answer; a body that breaks off after it changes nothing."""
    requests = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        await reader.readexactly(length)
        requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\npartial")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = webhook(f"http://127.0.0.1:{port}/hook", secret=SECRET, timeout=2)
    try:
        await backend.deliver(EVENT)
    finally:
        await backend.close()
        server.close()
        await server.wait_closed()
    assert requests == 1


async def test_a_receiver_that_hangs_up_without_answering_is_retried() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 20")  # and the connection drops mid status line
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = webhook(f"http://127.0.0.1:{port}/hook", timeout=2)
    try:
        with pytest.raises(DeliveryError) as caught:
            await backend.deliver(EVENT)
    finally:
        await backend.close()
        server.close()
        await server.wait_closed()
    assert caught.value.retryable
    assert str(caught.value) == "the receiver closed the connection before answering"


async def test_an_untrusted_tls_certificate_is_named_in_the_error() -> None:
    """A self-signed certificate (tests/data/webhooks/localhost.pem, for 127.0.0.1): the error,
    which the forwarder logs, says why the connection was refused."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", ok)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(DATA / "localhost.pem")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    secure = webhook(f"https://127.0.0.1:{port}/hook", timeout=2)
    plain = webhook(f"http://127.0.0.1:{port}/hook", timeout=2)
    try:
        with pytest.raises(DeliveryError) as untrusted:
            await secure.deliver(EVENT)
        with pytest.raises(DeliveryError) as wrong_scheme:
            await plain.deliver(EVENT)
    finally:
        await secure.close()
        await plain.close()
        await runner.cleanup()
    assert untrusted.value.retryable  # the certificate may be fixed on the receiver's side
    assert str(untrusted.value) == (
        "TLS certificate of 127.0.0.1 not accepted: self-signed certificate"
    )
    assert str(wrong_scheme.value) == "the receiver closed the connection before answering"


async def test_no_answer_in_time_is_retryable(receiver: Receiver) -> None:
    receiver.behaviour = receiver.hang
    backend = webhook(await receiver.start(), timeout=0.2)
    try:
        with pytest.raises(DeliveryError, match=r"no answer within 0.2 s") as caught:
            await backend.deliver(EVENT)
    finally:
        await backend.close()
    assert caught.value.retryable


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = webhook(f"http://127.0.0.1:{port}/hook", timeout=1)
    try:
        with pytest.raises(
            DeliveryError, match=f"cannot connect to 127.0.0.1:{port}: Connection refused$"
        ) as caught:
            await backend.deliver(EVENT)
    finally:
        await backend.close()
    assert caught.value.retryable


async def test_logs_hold_no_secret_query_or_body(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(_: Received) -> Answer:
        return 400, {}

    receiver.behaviour = refuse
    url = await receiver.start() + "?token=hush"
    backend = webhook(url, secret=SECRET)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(DeliveryError) as caught:
            await backend.deliver(EVENT)
    finally:
        await backend.close()
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]  # that one is the CEM's
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in ours)
    for text in (logged, str(caught.value), repr(backend)):
        assert "hush" not in text and SECRET[6:] not in text and "۹" not in text
    assert "/hook" in logged


async def test_a_secret_of_the_wrong_length_is_a_configuration_error(tmp_path: Path) -> None:
    """Said as every config mistake is (`seda: configuration error: ...`), not a traceback."""
    short = "whsec_" + base64.b64encode(b"only-nine").decode()
    backends = {"crm": {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": short}}
    with pytest.raises(ConfigError, match=r"gateway.yaml: backend 'crm': .*decodes to 9 bytes"):
        await create_app(load(write_config(tmp_path, backends=backends)))
