"""Seda's mail through relays that speak TLS: STARTTLS (587) and implicit TLS (SMTPS, 465). Real
aiosmtpd relays on loopback with certificates made for the test; the relay's certificate is
verified against the system's CAs, or relay.ca_file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from email_in.relay import RelayClient
from email_in.settings import Relay as RelaySettings
from email_in.settings import TlsMode
from gateway.backends import DeliveryError
from tests.e2e.harness import free_port
from tests.email.conftest import Relay, SedaFactory
from tests.email.tls_certs import Certificates, make

PASSWORD = "relay-password-9f3k"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test CA, a second CA and the relay's certificates, made once for this module."""
    return make(tmp_path_factory.mktemp("tls"))


@dataclass
class Logins:
    """The AUTH attempts a relay saw, and whether each came over TLS."""

    seen: list[tuple[bytes, bytes, bool]] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        over_tls = server.transport is not None and bool(server.transport.get_extra_info("cipher"))
        self.seen.append((data.login, data.password, over_tls))
        ok = (data.login, data.password) == (b"seda", PASSWORD.encode())
        return AuthResult(success=ok, handled=False)


@contextmanager
def serve(
    recorder: Relay, certificates: Certificates, mode: str, logins: Logins, cert: str = "relay"
) -> Iterator[None]:
    """A relay on recorder.port: `starttls` (required, AUTH only after it), `implicit` (TLS
    from the first byte) or `plain` (offers no STARTTLS, but would take a password)."""
    options: dict[str, Any] = {"authenticator": logins}
    if mode == "starttls":
        options |= {"tls_context": certificates.server(cert), "require_starttls": True}
        options |= {"auth_required": True}  # and auth_require_tls, aiosmtpd's default
    elif mode == "implicit":
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS throughout
        options |= {"ssl_context": certificates.server(cert), "auth_require_tls": False}
    else:
        options |= {"auth_require_tls": False}  # a tempting relay: AUTH offered in clear
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port, **options)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def _message() -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "s@example.com", "r@example.org", "hi"
    message.set_content("hello")
    return message.as_bytes(policy=policy.SMTP)


def _settings(port: int, tls: TlsMode, ca_file: Path | None) -> RelaySettings:
    login = {"username": "seda", "password": PASSWORD}
    return RelaySettings("127.0.0.1", port, tls, **login, timeout=5, ca_file=ca_file)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_mail_goes_out_over_tls_and_logs_in_only_over_it(
    certificates: Certificates, mode: str
) -> None:
    recorder, logins = Relay(port=free_port()), Logins()
    with serve(recorder, certificates, mode, logins):
        client = RelayClient(_settings(recorder.port, mode, certificates.ca), "seda.test")
        await client.send(_message(), "s@example.com", "r@example.org")
        await client.send(_message(), "s@example.com", "r@example.org")  # on the same connection
        await client.close()
    assert [s.rcpt_tos for s in recorder.sent] == [["r@example.org"]] * 2
    assert logins.seen == [(b"seda", PASSWORD.encode(), True)]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize(
    ("trust", "cert", "why"),
    [
        ("system", "relay", "unable to get local issuer certificate"),  # verified by default
        ("other_ca", "relay", "unable to get local issuer certificate"),
        ("ca", "misnamed", "IP address mismatch"),
    ],
)
async def test_a_certificate_seda_cannot_verify_keeps_the_mail(
    certificates: Certificates, mode: str, trust: str, cert: str, why: str
) -> None:
    recorder, logins = Relay(port=free_port()), Logins()
    ca_file = None if trust == "system" else getattr(certificates, trust)
    with serve(recorder, certificates, mode, logins, cert):
        client = RelayClient(_settings(recorder.port, mode, ca_file), "seda.test")
        with pytest.raises(DeliveryError) as caught:
            await client.send(_message(), "s@example.com", "r@example.org")
        await client.close()
    assert caught.value.retryable is True  # the operator fixes ca_file or the relay's certificate
    assert str(caught.value).startswith(f"TLS certificate of 127.0.0.1 not accepted: {why}")
    assert "relay.ca_file" in str(caught.value)
    assert recorder.sent == [] and logins.seen == []


async def test_a_relay_without_starttls_gets_neither_the_mail_nor_the_password(
    certificates: Certificates,
) -> None:
    recorder, logins = Relay(port=free_port()), Logins()
    with serve(recorder, certificates, "plain", logins):
        client = RelayClient(_settings(recorder.port, "starttls", certificates.ca), "seda.test")
        with pytest.raises(DeliveryError) as caught:
            await client.send(_message(), "s@example.com", "r@example.org")
        await client.close()
    assert caught.value.retryable is True
    assert "does not offer STARTTLS" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert recorder.sent == [] and logins.seen == []  # no AUTH, no MAIL in clear text


async def test_implicit_tls_to_a_plain_port_says_to_check_the_mode(
    certificates: Certificates,
) -> None:
    recorder, logins = Relay(port=free_port()), Logins()
    with serve(recorder, certificates, "plain", logins):
        client = RelayClient(_settings(recorder.port, "implicit", certificates.ca), "seda.test")
        with pytest.raises(DeliveryError) as caught:
            await client.send(_message(), "s@example.com", "r@example.org")
        await client.close()
    assert caught.value.retryable is True
    assert "TLS handshake with 127.0.0.1" in str(caught.value)
    assert "check relay.tls" in str(caught.value)
    assert recorder.sent == [] and logins.seen == []


def _relay_block(port: int, ca_file: Path) -> dict[str, Any]:
    """channels.email.relay as an operator writes it for an SMTPS relay."""
    login = {"username": "seda", "password": PASSWORD}
    return {"host": "127.0.0.1", "port": port, "tls": "implicit", "ca_file": str(ca_file), **login}


async def test_an_invitation_goes_out_over_implicit_tls(
    make_seda: SedaFactory, certificates: Certificates
) -> None:
    recorder, logins = Relay(port=free_port()), Logins()
    with serve(recorder, certificates, "implicit", logins):
        seda = await make_seda(relay=_relay_block(recorder.port, certificates.ca))
        await seda.invite("mailto:sara@example.ir")
        [sent] = await recorder.wait(1)
        await seda.client.close()  # Seda says QUIT while the relay is still there
    assert sent.rcpt_tos == ["sara@example.ir"]
    assert logins.seen == [(b"seda", PASSWORD.encode(), True)]


async def test_a_wrong_ca_file_is_logged_and_the_invitation_waits(
    make_seda: SedaFactory, certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.forwarder")
    recorder, logins = Relay(port=free_port()), Logins()
    with serve(recorder, certificates, "implicit", logins):
        seda = await make_seda(relay=_relay_block(recorder.port, certificates.other_ca))
        await seda.invite("mailto:sara@example.ir")
        for _ in range(150):
            if any(r.getMessage() == "delivery failed, will retry" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
        [row] = await seda.gateway.store.list_outbox(backend="channel.email")
        await seda.client.close()
    # The retries come fast here (base 0.05 s): there may be more than one, all alike.
    records = [r for r in caplog.records if r.getMessage() == "delivery failed, will retry"]
    assert records and {r.fields["error"] for r in records} == {records[0].fields["error"]}
    error = records[0].fields["error"]
    assert error.startswith("TLS certificate of 127.0.0.1 not accepted: unable to get local")
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert PASSWORD not in logged and "sara@example.ir" not in logged
    assert row.status == "pending" and row.last_error == error
    assert recorder.sent == [] and logins.seen == []
