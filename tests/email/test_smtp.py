"""Seda's SMTP server as a sending server sees it: what it accepts, refuses and stores."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time

import pytest

from tests.answer_schema import assert_valid_answer
from tests.conftest import read_jsonl
from tests.email.conftest import (
    DATA,
    DOMAIN,
    TOKENS,
    Seda,
    SedaFactory,
    plain_reply,
    reply_to,
    send,
)

ADDRESS = "mailto:leila@example.ir"


async def test_a_reply_is_stored_before_250_and_the_next_question_goes_out(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS, "post_call_nps", "fa")
    await seda.relay.wait(1)
    done = await send(seda, plain_reply(rid, "۱۰", "r1@mail.example"), [reply_to(rid)])
    assert (done.mail, done.rcpt, done.data) == (250, [250], 250)
    [answer] = await seda.answers(rid)  # stored by the time 250 came back
    assert_valid_answer(answer)
    assert (answer["value"], answer["raw"], answer["message_id"]) == (10, "۱۰", "r1@mail.example")
    second = (await seda.relay.wait(2))[1]
    assert second.rcpt_tos == ["leila@example.ir"]
    assert second.message["Reply-To"] == reply_to(rid)


async def test_relaying_is_refused_at_rcpt(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    raw = plain_reply(rid, "9", "relay@x")
    for rcpt in ["bob@example.com", f"survey+{TOKENS.issue(rid)}@example.com", "bob@[127.0.0.1]"]:
        done = await send(seda, raw, [rcpt])
        assert done.rcpt == [550] and done.data is None
    assert await seda.answers(rid) == []


async def test_unknown_and_forged_tokens_are_refused_and_nothing_is_stored(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    token = TOKENS.issue(rid)
    forged = token[:30] + ("a" if token[30] != "a" else "b") + token[31:]
    spare_bits = token[:-1] + chr(ord(token[-1]) + 1)  # same bytes, another spelling
    other = TOKENS.issue("01936f0e-0000-7000-8000-000000000000")  # a response that never was
    not_ours = [
        f"admin+{token}@{DOMAIN}",
        f"postmaster@{DOMAIN}",
        f"survey+{token}{'x' * 30}@{DOMAIN}",  # longer than 64 octets
    ]
    done = await send(seda, plain_reply(rid, "9", "f@x"), [*not_ours, f"survey+{other}@{DOMAIN}"])
    assert done.rcpt == [550] * len(not_ours) + [250]
    assert done.data == 250  # a genuine token of no stored response: accepted, ignored
    # A survey address without a genuine token may still match by thread or sender (see
    # test_correlation); this plain message, from a stranger, matches nothing: 550 at DATA.
    for rcpt in [forged, spare_bits, token[:-2], ""]:
        address = f"survey+{rcpt}@{DOMAIN}" if rcpt else f"survey@{DOMAIN}"
        done = await send(seda, plain_reply(rid, "9", f"{rcpt}@x"), [address])
        assert (done.rcpt, done.data) == ([250], 550), address
    assert await seda.answers(rid) == []
    assert await seda.status(rid) == "open"


async def test_a_case_folded_address_still_works(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    done = await send(seda, plain_reply(rid, "9", "u@x"), [reply_to(rid).upper()])
    assert done.rcpt == [250] and done.data == 250
    assert [a["value"] for a in await seda.answers(rid)] == [9]


async def test_an_oversized_message_is_refused_and_nothing_is_stored(
    make_seda: SedaFactory,
) -> None:
    seda = await make_seda(data_size_limit=4096)
    rid = await seda.invite(ADDRESS)
    raw = plain_reply(rid, "9\r\n" + ("x" * 70 + "\r\n") * 120, "big@x")
    done = await send(seda, raw, [reply_to(rid)])
    assert done.rcpt == [250] and done.data == 552
    assert await seda.answers(rid) == []
    assert await seda.status(rid) == "open"


async def test_a_declared_size_over_the_limit_is_refused_at_mail(make_seda: SedaFactory) -> None:
    seda = await make_seda(data_size_limit=4096)

    def declare() -> int:
        with smtplib.SMTP("127.0.0.1", seda.smtp_port, local_hostname="c.test") as smtp:
            smtp.ehlo()
            return smtp.mail("a@example.org", ["SIZE=100000"])[0]

    assert await asyncio.to_thread(declare) == 552


async def test_recipients_beyond_the_cap_get_452(make_seda: SedaFactory) -> None:
    seda = await make_seda(max_recipients=2)
    ids = [await seda.invite(f"mailto:p{n}@example.org") for n in range(3)]
    done = await send(seda, plain_reply(ids[0], "9", "cap@x"), [reply_to(i) for i in ids])
    assert done.rcpt == [250, 250, 452]


async def test_the_same_message_twice_is_one_answer(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    raw = plain_reply(rid, "6", "twice@mail.example")
    first = await send(seda, raw, [reply_to(rid)])
    second = await send(seda, raw, [reply_to(rid)])
    assert first.data == second.data == 250
    [answer] = await seda.answers(rid)
    assert_valid_answer(answer)
    await asyncio.sleep(0.2)
    assert len(seda.relay.sent) == 2  # the invitation and one next question


async def test_a_store_failure_is_451_so_the_sender_retries(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    await seda.gateway.store.close()
    done = await send(seda, plain_reply(rid, "9", "later@x"), [reply_to(rid)])
    assert done.data == 451


async def test_an_unreadable_body_charset_still_reads(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    raw = plain_reply(rid, "8", "cs@x").replace(b'charset="utf-8"', b'charset="x-unknown"')
    assert (await send(seda, raw, [reply_to(rid)])).data == 250
    assert [a["value"] for a in await seda.answers(rid)] == [8]


async def test_mail_to_the_unsubscribe_address_opts_out(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS, "post_call_nps", "fa")
    body = plain_reply(rid, "This message was automatically generated by Gmail.", "un@x")
    done = await send(seda, body, [reply_to(rid, "unsubscribe")])
    assert done.rcpt == [250] and done.data == 250
    assert await seda.status(rid) == "abandoned"
    assert await seda.answers(rid) == []
    resp = await seda.client.post(
        "/api/v1/invitations",
        json={"survey": "post_call_nps", "respondent": ADDRESS, "channel": "email"},
    )
    assert resp.status == 409  # opted out: no more surveys
    for _ in range(100):
        types = [e["type"] for e in read_jsonl(seda.tmp_path / "answers.jsonl")]
        if "respondent.opted_out" in types:
            break
        await asyncio.sleep(0.02)
    assert "respondent.opted_out" in types


async def test_stop_in_a_reply_opts_out_too(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS, "post_call_nps", "fa")
    assert (await send(seda, plain_reply(rid, "لغو", "stop@x"), [reply_to(rid)])).data == 250
    assert await seda.status(rid) == "abandoned"


async def test_a_reply_to_a_superseded_invitation_answers_nothing(seda: Seda) -> None:
    old = await seda.invite(ADDRESS, "post_call_nps")
    new = await seda.invite(ADDRESS, "issue_resolved")
    assert (await send(seda, plain_reply(old, "yes", "old@x"), [reply_to(old)])).data == 250
    assert await seda.answers(old) == [] and await seda.answers(new) == []
    assert await seda.status(new) == "open"


async def test_a_person_writing_to_the_bounce_address_is_not_an_answer(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    assert (await send(seda, plain_reply(rid, "9", "b@x"), [reply_to(rid, "bounce")])).data == 250
    assert await seda.answers(rid) == []


async def test_a_silent_client_is_hung_up_on(make_seda: SedaFactory) -> None:
    seda = await make_seda(timeout=1)

    def idle() -> None:
        with smtplib.SMTP("127.0.0.1", seda.smtp_port, local_hostname="c.test") as smtp:
            smtp.ehlo()
            time.sleep(1.5)
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.mail("a@example.org")

    await asyncio.to_thread(idle)


async def test_starttls_with_the_configured_certificate(make_seda: SedaFactory) -> None:
    cert, key = DATA / "tls/test-only.crt", DATA / "tls/test-only.key"
    seda = await make_seda(tls_cert=str(cert), tls_key=str(key), require_starttls=True)
    rid = await seda.invite(ADDRESS)
    raw = plain_reply(rid, "9", "tls@x")
    plain = await send(seda, raw, [reply_to(rid)])
    assert plain.mail == 530  # STARTTLS first
    context = ssl.create_default_context(cafile=str(cert))
    done = await send(seda, raw, [reply_to(rid)], tls=context)
    assert (done.mail, done.rcpt, done.data) == (250, [250], 250)
    assert [a["value"] for a in await seda.answers(rid)] == [9]


async def test_a_reply_to_an_open_response_needs_no_store_read(seda: Seda) -> None:
    """The token names the response: while it is open, the core's session cache says whose it
    is; once it is closed or replaced, the store has the last word."""
    rid = await seda.invite(ADDRESS, "post_call_nps", "fa")
    await seda.relay.wait(1)
    cached = seda.gateway.cached_open_response(rid)
    assert cached is not None and (cached.address, cached.channel) == (ADDRESS, "email")
    reads: list[str] = []
    store_session = seda.gateway.store.session

    async def counting(response_id: str) -> object:
        # Reads of this response only: the forwarder may mail the newer invitation below before
        # its commit is answered, and then reads that response (a cache miss, not a reply's read).
        if response_id == rid:
            reads.append(response_id)
        return await store_session(response_id)

    seda.gateway.store.session = counting  # type: ignore[method-assign]
    done = await send(seda, plain_reply(rid, "۱۰", "cache1@mail.example"), [reply_to(rid)])
    await seda.relay.wait(2)  # the next question, mailed with its answer links
    assert done.data == 250 and reads == []
    assert [a["value"] for a in await seda.answers(rid)] == [10]
    newer = await seda.invite(ADDRESS, "issue_resolved")  # replaces the open response
    assert seda.gateway.cached_open_response(rid) is None
    assert seda.gateway.cached_open_response(newer) is not None
    done = await send(seda, plain_reply(rid, "yes", "cache2@mail.example"), [reply_to(rid)])
    assert done.data == 250 and reads == [rid]  # the closed one: read, and answers nothing
    assert [a["value"] for a in await seda.answers(rid)] == [10]


def nested(token_address: str, depth: int, lines: int) -> bytes:
    """A reply whose answer sits `depth` multiparts deep, followed by `lines` empty lines: the
    email package checks every line against every open boundary (depth x lines)."""
    raw = (
        f"From: someone@example.org\r\nTo: {token_address}\r\nSubject: Re: survey\r\n"
        "Message-ID: <deep@mail.example>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    for level in range(depth):
        raw += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
    return raw + b"Content-Type: text/plain\r\n\r\n9\r\n" + b"\r\n" * lines


async def test_a_message_too_costly_to_parse_is_refused_at_once(seda: Seda) -> None:
    """300 nested multiparts over 100,000 lines (216 KB) kept the event loop, and so every
    channel, busy for 2.5 s; 900 over 440,000 lines (under 1 MiB) for 34 s."""
    rid = await seda.invite(ADDRESS)
    began = time.monotonic()
    done = await send(seda, nested(reply_to(rid), 300, 100_000), [reply_to(rid)])
    assert done.data == 554
    assert time.monotonic() - began < 1.0
    assert await seda.answers(rid) == []
    # 20,000 parts of one multipart: 0.36 s to parse.
    head, _, _ = nested(reply_to(rid), 0, 0).partition(b"Content-Type: text/plain")
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\n9\r\n" for _ in range(20_000))
    raw = head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    began = time.monotonic()
    assert (await send(seda, raw, [reply_to(rid)])).data == 554
    assert time.monotonic() - began < 1.0
    assert await seda.answers(rid) == []
    assert await seda.status(rid) == "open"
    # Ordinary nesting (a forwarded message in a signed one) over as many lines is read.
    done = await send(seda, nested(reply_to(rid), 4, 100_000), [reply_to(rid)])
    assert done.data == 250
    assert [a["value"] for a in await seda.answers(rid)] == [9]


def html_reply(token_address: str, html: str) -> bytes:
    """An HTML-only reply (its body read with the standard library's html.parser), in lines
    of 76 characters."""
    html = "\r\n".join(html[i : i + 76] for i in range(0, len(html), 76))
    return (
        f"From: someone@example.org\r\nTo: {token_address}\r\nSubject: Re: survey\r\n"
        "Message-ID: <html@mail.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n\r\n' + html + "\r\n"
    ).encode()


@pytest.mark.parametrize(
    "junk",
    ["<a x" * 8_000, "<!--" * 20_000, "<![CDATA[>" * 10_000, "</x" * 30_000],
    ids=["open tags", "open comments", "open cdata", "open end tags"],
)
async def test_html_that_never_closes_its_tags_is_read_at_once(seda: Seda, junk: str) -> None:
    """html.parser (Python 3.11.7) rescans to the end for every construct left open: 8,000
    `<a x` (32 KB) took over 5 s of the event loop, 250,000 (1 MiB) would take hours; 20,000
    `<!--` 2.5 s; a `<![` that is no CDATA made the whole message unreadable (554)."""
    rid = await seda.invite(ADDRESS)
    began = time.monotonic()
    done = await send(seda, html_reply(reply_to(rid), "<p>9</p>" + junk), [reply_to(rid)])
    assert done.data == 250
    assert time.monotonic() - began < 1.0
    assert [a["value"] for a in await seda.answers(rid)] == [9]
