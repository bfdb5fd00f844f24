"""DKIM and SPF on inbound replies, against a DNS server on loopback; DKIM on Seda's own mail.

Replies are signed here with dkimpy and a key made for the test; the DNS server serves its public
key and the SPF policies. Policies: record (the default: log the verdict), require (refuse what
fails), off; and trusting the Authentication-Results of an MTA in front of Seda.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import dkim
import pytest

from email_in.authenticity import Checker, Verdict, aligned_domains
from email_in.settings import Authenticity
from gateway.logs import JsonFormatter
from tests.email.conftest import (
    DATA,
    DOMAIN,
    Dns,
    Seda,
    SedaFactory,
    fixture,
    plain_reply,
    reply_to,
    send,
)
from tests.email.dkim_keys import key

ADDRESS = "mailto:leila@example.ir"
REQUIRE = {"policy": "require"}
RESPONSE = "01936f0e-8d2a-7c3b-9f10-0a1b2c3d4e5f"


def signed(raw: bytes, domain: str = "example.ir", selector: str = "s1") -> bytes:
    """The message with a DKIM-Signature by the test key."""
    headers = [b"from", b"to", b"subject", b"message-id", b"content-type"]
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), key().pem, include_headers=headers
    )
    return bytes(signature) + raw


def publish_key(seda: Seda, domain: str = "example.ir", selector: str = "s1") -> None:
    seda.dns.zone.txt(f"{selector}._domainkey.{domain}", key().record)


async def test_a_signed_reply_passes_require(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity=REQUIRE)
    rid = await seda.invite(ADDRESS)
    publish_key(seda)
    raw = signed(plain_reply(rid, "9", "d1@mail.example", sender="leila@example.ir"))
    done = await send(seda, raw, [reply_to(rid)], mail_from="leila@example.ir")
    assert done.data == 250
    assert [a["value"] for a in await seda.answers(rid)] == [9]
    assert ("s1._domainkey.example.ir", "TXT") in seda.dns.zone.queries


async def test_a_message_changed_after_signing_is_refused(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity=REQUIRE)
    rid = await seda.invite(ADDRESS)
    publish_key(seda)
    raw = signed(plain_reply(rid, "9", "d2@mail.example", sender="leila@example.ir"))
    tampered = raw.replace(b"\r\n9\r\n", b"\r\n0\r\n")
    assert tampered != raw
    code, text = await _data(seda, tampered, reply_to(rid), "leila@example.ir")
    assert code == 550 and "5.7.26" in text and "not authenticated" in text
    assert await seda.answers(rid) == [] and await seda.status(rid) == "open"


async def test_a_signature_of_another_domain_does_not_vouch(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity=REQUIRE)
    rid = await seda.invite(ADDRESS)
    publish_key(seda, "attacker.example")
    raw = signed(plain_reply(rid, "9", "d3@x", sender="leila@example.ir"), "attacker.example")
    done = await send(seda, raw, [reply_to(rid)], mail_from="eve@attacker.example")
    assert done.data == 550  # a valid signature, but not for the From domain
    assert await seda.answers(rid) == []


async def test_spf_pass_or_fail_decides_an_unsigned_reply(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity=REQUIRE)
    rid = await seda.invite(ADDRESS)
    zone = seda.dns.zone
    zone.txt("example.ir", "v=spf1 include:_spf.example.ir -all")
    zone.txt("_spf.example.ir", "v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("spoofed.example", "v=spf1 ip4:192.0.2.0/24 -all")
    raw = plain_reply(rid, "9", "p1@x", sender="leila@example.ir")
    done = await send(seda, raw, [reply_to(rid)], mail_from="leila@example.ir")
    assert done.data == 250
    spoof = plain_reply(rid, "2", "p2@x", sender="boss@spoofed.example")
    refused = await send(seda, spoof, [reply_to(rid)], mail_from="boss@spoofed.example")
    assert refused.data == 550
    assert [a["value"] for a in await seda.answers(rid)] == [9]


async def test_no_dns_answer_is_451_so_the_sender_retries(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity={**REQUIRE, "dns_timeout": 1})
    rid = await seda.invite(ADDRESS)
    seda.dns.zone.silent |= {"example.ir", "s1._domainkey.example.ir"}
    raw = signed(plain_reply(rid, "9", "t1@x", sender="leila@example.ir"))
    code, text = await _data(seda, raw, reply_to(rid), "leila@example.ir")
    assert code == 451 and "4.4.3" in text
    assert await seda.answers(rid) == []


async def test_record_logs_the_verdict_and_takes_the_answer(
    seda: Seda, caplog: pytest.LogCaptureFixture
) -> None:
    rid = await seda.invite(ADDRESS)
    seda.dns.zone.txt("example.ir", "v=spf1 -all")
    caplog.set_level(logging.INFO, logger="seda.email")
    raw = plain_reply(rid, "6", "r1@x", sender="leila@example.ir")
    assert (await send(seda, raw, [reply_to(rid)], mail_from="leila@example.ir")).data == 250
    assert [a["value"] for a in await seda.answers(rid)] == [6]
    [record] = [r for r in caplog.records if r.getMessage() == "email authenticity"]
    found = record.fields  # type: ignore[attr-defined]
    assert found == {"dkim": "none", "spf": "fail", "aligned": False, "checked_by": "seda"}
    line = JsonFormatter().format(record)
    assert "leila" not in line and "example.ir" not in line


async def test_record_checks_a_reply_with_a_token_whatever_is_logged(
    seda: Seda, caplog: pytest.LogCaptureFixture
) -> None:
    rid = await seda.invite(ADDRESS)
    seda.dns.zone.txt("example.ir", "v=spf1 -all")
    caplog.set_level(logging.WARNING, logger="seda.email")
    raw = plain_reply(rid, "6", "w1@x", sender="leila@example.ir")
    assert (await send(seda, raw, [reply_to(rid)], mail_from="leila@example.ir")).data == 250
    assert ("example.ir", "TXT") in seda.dns.zone.queries  # the log level changes nothing
    caplog.set_level(logging.INFO, logger="seda.email")
    raw = plain_reply(rid, "too slow", "w2@x", sender="leila@example.ir")
    assert (await send(seda, raw, [reply_to(rid)], mail_from="leila@example.ir")).data == 250
    assert ("example.ir", "TXT") in seda.dns.zone.queries
    [record] = [r for r in caplog.records if r.getMessage() == "email authenticity"]
    assert record.fields["spf"] == "fail"  # type: ignore[attr-defined]
    assert [a["value"] for a in await seda.answers(rid)] == [6, "too slow"]


async def test_the_from_fallback_is_checked_whatever_is_logged(
    seda: Seda, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="seda.email")
    rid = await seda.invite(ADDRESS)
    seda.dns.zone.txt("example.ir", "v=spf1 ip4:192.0.2.1 -all")  # not this client (127.0.0.1)
    bare = f"survey@{DOMAIN}"  # no token: only the From address can match it
    raw = plain_reply(rid, "9", "w3@x", sender="leila@example.ir").replace(
        f"To: {reply_to(rid)}".encode(), f"To: {bare}".encode()
    )
    done = await send(seda, raw, [bare], mail_from="leila@example.ir")
    assert done.data == 550  # not authenticated, so not matched by its From
    assert ("example.ir", "TXT") in seda.dns.zone.queries
    assert await seda.answers(rid) == []


async def test_a_check_answered_from_the_cache_runs_without_a_thread(
    dns: Dns, threads: list[object]
) -> None:
    publish_key_in(dns)
    dns.zone.txt("example.ir", "v=spf1 ip4:127.0.0.1 -all")
    checker = Checker(Authenticity(dns_server=("127.0.0.1", dns.port), dns_timeout=2))
    raw = signed(plain_reply(RESPONSE, "9", "c1@x", sender="leila@example.ir"))
    first = await _check_from(checker, raw, "127.0.0.1")
    asked = list(dns.zone.queries)
    assert asked and len(threads) == 1  # nothing cached yet: looked up in the worker thread
    second = await _check_from(checker, raw, "127.0.0.1")
    assert first == second == Verdict("pass", "pass", True)
    assert dns.zone.queries == asked and len(threads) == 1  # the cache, on the event loop
    tampered = raw.replace(b"\r\n9\r\n", b"\r\n0\r\n")
    assert (await _check_from(checker, tampered, "127.0.0.1")).dkim == "fail"
    assert (await _check_from(checker, raw, "192.0.2.1")) == Verdict("pass", "fail", True)
    assert len(threads) == 1
    big = raw + b"> quoted\r\n" * 8000  # over INLINE_SIZE: checked in the thread, body and all
    assert (await _check_from(checker, big, "127.0.0.1")) == Verdict("fail", "pass", True)
    assert len(threads) == 2


async def test_an_answer_missing_from_the_cache_sends_the_check_to_the_thread(
    dns: Dns, threads: list[object]
) -> None:
    # pyspf swallows any error while it fetches an exp= explanation; the miss must still count.
    dns.zone.txt("example.ir", "v=spf1 ip4:127.0.0.1 -all exp=why.example.ir")
    dns.zone.failing.add("why.example.ir")  # SERVFAIL: never cached
    checker = Checker(Authenticity(dns_server=("127.0.0.1", dns.port), dns_timeout=2))
    raw = plain_reply(RESPONSE, "9", "c2@x", sender="leila@example.ir")
    first = await _check_from(checker, raw, "127.0.0.1")
    second = await _check_from(checker, raw, "127.0.0.1")
    assert first == second == Verdict("none", "pass", True)
    assert len(threads) == 2  # both times the full check, in the thread
    assert dns.zone.queries.count(("why.example.ir", "TXT")) == 2
    assert dns.zone.queries.count(("example.ir", "TXT")) == 1  # the policy came from the cache


async def test_a_trusted_mta_verdict_is_used_and_others_are_not(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity={**REQUIRE, "authserv_id": "MX.Reply.Example"})
    rid = await seda.invite(ADDRESS)

    def with_results(*values: str, message_id: str) -> bytes:
        raw = plain_reply(rid, "8", message_id, sender="leila@example.ir")
        return b"".join(f"Authentication-Results: {v}\r\n".encode() for v in values) + raw

    ours_pass = "mx.reply.example; dkim=pass (2048-bit key) header.d=example.ir header.s=s1"
    ours_fail = "mx.reply.example; dkim=fail header.d=example.ir; spf=fail smtp.mailfrom=example.ir"
    forged = "evil.example; dkim=pass header.d=example.ir; dmarc=pass header.from=example.ir"
    for values, code in [
        ([forged], 550),  # another authserv-id: ignored
        ([ours_fail, forged.replace("evil.example", "mx.reply.example")], 550),  # topmost counts
        ([ours_pass], 250),
    ]:
        raw = with_results(*values, message_id=f"ar{len(values)}{code}@x")
        done = await send(seda, raw, [reply_to(rid)], mail_from="leila@example.ir")
        assert done.data == code, values
    assert [a["value"] for a in await seda.answers(rid)] == [8]
    assert seda.dns.zone.queries == []  # Seda looked nothing up itself


async def test_bounces_to_the_bounce_address_pass_under_require(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity=REQUIRE)
    rid = await seda.invite("mailto:nobody@example.net")
    raw = fixture("bounce_dsn_hard.eml", rid, "nobody@example.net")
    done = await send(seda, raw, [reply_to(rid, "bounce")], mail_from="")
    assert done.data == 250
    assert await seda.status(rid) == "abandoned"


async def test_seda_signs_its_mail_and_covers_list_unsubscribe(
    make_seda: SedaFactory, tmp_path: Path
) -> None:
    pem = tmp_path / "dkim.pem"
    pem.write_bytes(key().pem)
    seda = await make_seda(
        dkim={"domain": "example.com", "selector": "seda", "private_key": str(pem)}
    )
    await seda.invite(ADDRESS)
    [sent] = await seda.relay.wait(1)
    signature = dkim.util.parse_tag_value(sent.message["DKIM-Signature"].encode())
    covered = [h.strip() for h in signature[b"h"].decode().split(":")]
    for name in ["from", "subject", "reply-to", "list-unsubscribe", "list-unsubscribe-post"]:
        assert covered.count(name) == 2, name  # signed, and once more so none can be added
    assert signature[b"d"] == b"example.com" and signature[b"s"] == b"seda"
    seda.dns.zone.txt("seda._domainkey.example.com", key().record)
    checker = Checker(Authenticity(dns_server=("127.0.0.1", seda.dns.port), dns_timeout=2))
    verdict = await _check(checker, sent.raw)
    assert (verdict.dkim, verdict.aligned) == ("pass", True)
    changed = sent.raw.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <http://")
    assert (await _check(checker, changed)).dkim == "fail"


@pytest.mark.parametrize(
    ("one", "other", "aligned"),
    [
        ("example.ir", "example.ir", True),
        ("mail.example.ir", "example.ir", True),
        ("example.ir", "news.example.ir", True),
        ("EXAMPLE.ir.", "example.IR", True),
        ("example.ir", "badexample.ir", False),
        ("ir", "example.ir", False),  # a lone label vouches for nothing
        ("example.com", "example.ir", False),
        (None, "example.ir", False),
    ],
)
def test_alignment(one: str | None, other: str, aligned: bool) -> None:
    assert aligned_domains(one, other) is aligned


def test_settings_mistakes() -> None:
    from email_in.settings import parse
    from gateway.config import ConfigError

    base = {
        "reply_domain": "reply.example",
        "token_secret": "0123456789abcdef",
        "from": "Seda <s@example.com>",
        "relay": {"host": "smtp.example.com"},
    }
    assert parse(base).authenticity.policy == "record"
    assert parse(base).max_connections == 100
    assert parse(base).max_connections_per_client == 20
    for change, message in [
        ({"authenticity": {"policy": "strict"}}, "off, record or require"),
        ({"authenticity": {"dns_server": "127.0.0.1"}}, "host:port"),
        ({"authenticity": {"authserv_id": "a b"}}, "authserv_id"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections_per_client": 0}, "max_connections_per_client"),
        ({"dkim": {"domain": "example.com", "selector": "s"}}, "private_key"),
        (
            {
                "dkim": {
                    "domain": "example.com",
                    "selector": "s",
                    "private_key": str(DATA / "tls/test-only.crt"),
                }
            },
            "not a PEM RSA",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse({**base, **change})
    settings = parse({**base, "authenticity": {"dns_server": "[::1]:5353", "policy": "off"}})
    assert settings.authenticity.dns_server == ("::1", 5353)


def publish_key_in(dns: Dns, domain: str = "example.ir", selector: str = "s1") -> None:
    dns.zone.txt(f"{selector}._domainkey.{domain}", key().record)


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The functions the checks hand to a worker thread (asyncio.to_thread), as they go."""
    handed: list[object] = []
    to_thread = asyncio.to_thread

    async def counted(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        handed.append(func)
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    return handed


async def _check_from(checker: Checker, raw: bytes, peer_ip: str) -> Verdict:
    """The verdict on a message sent from peer_ip with MAIL FROM leila@example.ir."""
    from email_in.inbound import read

    reading = read(raw, "leila@example.ir")
    assert reading.message is not None
    domain = reading.author_domain
    return await checker.check(raw, reading.message, domain, peer_ip, "c.test", "leila@example.ir")


async def _check(checker: Checker, raw: bytes) -> Verdict:
    from email_in.inbound import read

    reading = read(raw, "bounce@reply.example")
    assert reading.message is not None
    return await checker.check(raw, reading.message, reading.author_domain, None, None, None)


async def _data(seda: Seda, raw: bytes, rcpt: str, mail_from: str) -> tuple[int, str]:
    """The code and text of the DATA reply."""
    import smtplib

    def talk() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", seda.smtp_port, local_hostname="c.test", timeout=10) as s:
            s.ehlo()
            s.mail(mail_from)
            assert s.rcpt(rcpt)[0] == 250
            code, text = s.data(raw)
            return code, text.decode()

    return await asyncio.to_thread(talk)
