"""The cap on concurrent SMTP connections: 421 beyond it, room again when clients leave."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time

import pytest

from tests.email.conftest import DATA, SedaFactory, plain_reply, reply_to, send


def connect(port: int, tls: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """An open SMTP session after EHLO (and STARTTLS), held by the caller."""
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="held.test", timeout=5)
    smtp.ehlo()
    if tls is not None:
        smtp.starttls(context=tls)
        smtp.ehlo()
    return smtp


def refused(port: int) -> tuple[int, str]:
    """The greeting of a connection Seda refuses."""
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        smtplib.SMTP("127.0.0.1", port, local_hostname="extra.test", timeout=5)
    return caught.value.smtp_code, caught.value.smtp_error.decode()


async def eventually_accepted(port: int, tls: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """A connection once the server has noticed that a client left (within a second)."""
    for _ in range(50):
        try:
            return await asyncio.to_thread(connect, port, tls)
        except smtplib.SMTPConnectError:
            await asyncio.sleep(0.02)
    raise AssertionError("no room after a client left")


async def test_beyond_the_cap_421_then_room_again(make_seda: SedaFactory) -> None:
    seda = await make_seda(max_connections=3)
    held = [await asyncio.to_thread(connect, seda.smtp_port) for _ in range(3)]
    try:
        for _ in range(2):
            code, text = await asyncio.to_thread(refused, seda.smtp_port)
            assert (code, text) == (421, "4.3.2 Too many connections, try again later")
        assert (await asyncio.to_thread(held[0].noop))[0] == 250  # the others are served
        await asyncio.to_thread(held.pop(0).quit)
        held.append(await eventually_accepted(seda.smtp_port))
        assert (await asyncio.to_thread(refused, seda.smtp_port))[0] == 421
    finally:
        for smtp in held:
            await asyncio.to_thread(smtp.quit)
    # Every slot comes back: a whole transaction goes through on each of three new clients.
    rid = await seda.invite("mailto:leila@example.ir")
    again = [await eventually_accepted(seda.smtp_port) for _ in range(3)]
    for smtp in again:
        await asyncio.to_thread(smtp.quit)
    done = await send(seda, plain_reply(rid, "9", "after@x"), [reply_to(rid)])
    assert done.data == 250


async def test_a_client_hung_up_on_leaves_no_slot_taken(make_seda: SedaFactory) -> None:
    seda = await make_seda(max_connections=1, timeout=1)
    idle = await asyncio.to_thread(connect, seda.smtp_port)
    await asyncio.sleep(1.3)  # the per-command timeout closes the silent client
    with pytest.raises(smtplib.SMTPServerDisconnected):
        await asyncio.to_thread(idle.noop)
    idle.close()
    smtp = await eventually_accepted(seda.smtp_port)
    await asyncio.to_thread(smtp.quit)


async def test_starttls_sessions_are_counted_and_released(make_seda: SedaFactory) -> None:
    cert, key = DATA / "tls/test-only.crt", DATA / "tls/test-only.key"
    seda = await make_seda(max_connections=1, tls_cert=str(cert), tls_key=str(key))
    tls = ssl.create_default_context(cafile=str(cert))
    smtp = await asyncio.to_thread(connect, seda.smtp_port, tls)
    assert (await asyncio.to_thread(refused, seda.smtp_port))[0] == 421
    await asyncio.to_thread(smtp.quit)
    smtp = await eventually_accepted(seda.smtp_port, tls)
    await asyncio.to_thread(smtp.quit)


async def test_a_data_that_drips_in_is_cut_at_the_command_timeout(make_seda: SedaFactory) -> None:
    seda = await make_seda(timeout=1)
    rid = await seda.invite("mailto:leila@example.ir")

    def drip() -> float:
        smtp = connect(seda.smtp_port)
        smtp.mail("slow@example.org")
        assert smtp.rcpt(reply_to(rid))[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        started = time.monotonic()
        try:
            for _ in range(30):  # a line every 0.2 s never ends the message
                smtp.send(b"Subject: slow\r\n")
                time.sleep(0.2)
        except OSError:
            return time.monotonic() - started
        finally:
            smtp.close()
        raise AssertionError("the server kept a dripping DATA open for 6 s")

    assert await asyncio.to_thread(drip) < 2.5
    assert await seda.answers(rid) == []


async def test_a_body_sent_after_a_refused_recipient_is_not_logged(
    make_seda: SedaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken client sends its message's lines as commands after RCPT was refused; aiosmtpd
    warns of each unrecognised one: the verb is kept only when it is an SMTP verb."""
    seda = await make_seda()

    def broken_client() -> int:
        smtp = connect(seda.smtp_port)
        smtp.mail("someone@example.org")
        assert smtp.rcpt("nobody@example.org")[0] == 550
        code = smtp.docmd("MY-SECRET-REPLY-TEXT", "and the rest of the line")[0]
        assert smtp.docmd("EXPNX")[0] == code
        smtp.close()
        return code

    assert await asyncio.to_thread(broken_client) == 500
    await asyncio.sleep(0.1)
    warned = [r.getMessage() for r in caplog.records if r.name == "mail.log"]
    assert len([m for m in warned if m.endswith("unrecognised: <not an SMTP command>")]) == 2
    assert not any("MY-SECRET" in m or "EXPNX" in m for m in warned)


def connect_from(port: int, source: str) -> smtplib.SMTP:
    """An open SMTP session from another loopback address (any of 127/8 reaches the server)."""
    smtp = smtplib.SMTP(
        "127.0.0.1", port, local_hostname="held.test", timeout=5, source_address=(source, 0)
    )
    smtp.ehlo()
    return smtp


async def test_one_client_cannot_take_every_connection(make_seda: SedaFactory) -> None:
    """A client holding its connections open (a NOOP now and then resets `timeout`) could take
    every slot and shut everyone else out; each client address gets its own, smaller share."""
    seda = await make_seda(max_connections=10, max_connections_per_client=3)
    held = [await asyncio.to_thread(connect, seda.smtp_port) for _ in range(3)]
    try:
        code, text = await asyncio.to_thread(refused, seda.smtp_port)
        assert (code, text) == (421, "4.7.0 Too many connections from your address, try later")
        other = await asyncio.to_thread(connect_from, seda.smtp_port, "127.0.0.2")
        held.append(other)
        assert (await asyncio.to_thread(other.noop))[0] == 250  # another client is served
        await asyncio.to_thread(held.pop(0).quit)
        held.append(await eventually_accepted(seda.smtp_port))  # its slot comes back
    finally:
        for smtp in held:
            await asyncio.to_thread(smtp.quit)


@pytest.mark.parametrize(
    ("peer", "client"),
    [
        (("203.0.113.7", 25), "203.0.113.7"),
        (("::ffff:203.0.113.7", 25, 0, 0), "203.0.113.7"),  # IPv4 on a dual-stack socket
        (("2001:db8:1:2:aaaa::1", 25, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 25, 0, 0), "2001:db8:1:2::/64"),  # the same host's /64
        (("fe80::1%eth0", 25, 0, 2), "fe80::/64"),
    ],
)
def test_what_one_client_is(peer: tuple[object, ...], client: str) -> None:
    from email_in.channel import client_key

    assert client_key(peer) == client
