"""Replies whose reply address lost its token: matched by thread, then by sender, else 550."""

from __future__ import annotations

import asyncio

from tests.email.conftest import DOMAIN, Seda, SedaFactory, send

ADDRESS = "mailto:leila@example.ir"
BARE = f"survey@{DOMAIN}"  # what a client that drops "+token" writes to


def reply(
    text: str,
    message_id: str,
    sender: str = "leila@example.ir",
    in_reply_to: str | None = None,
    references: str | None = None,
    extra: str = "",
) -> bytes:
    """A plain reply to the bare survey address, with the thread headers given."""
    lines = [f"From: {sender}", f"To: {BARE}", "Subject: Re: A short survey"]
    lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    lines += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"']
    return ("\r\n".join(lines) + f"\r\n{extra}\r\n{text}\r\n\r\n> the question\r\n").encode()


async def invitation_id(seda: Seda, index: int = 0) -> str:
    """The Message-ID of the index-th email Seda sent."""
    return str((await seda.relay.wait(index + 1))[index].message["Message-ID"])


async def values(seda: Seda, rid: str) -> list[object]:
    return [a["value"] for a in await seda.answers(rid)]


async def test_in_reply_to_names_the_response(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    sent = await invitation_id(seda)
    done = await send(seda, reply("9", "t1@mail.example", in_reply_to=sent), [BARE])
    assert (done.rcpt, done.data) == ([250], 250)
    assert await values(seda, rid) == [9]
    second = (await seda.relay.wait(2))[1].message  # the next question, in the same thread
    assert second["In-Reply-To"] == "<t1@mail.example>"


async def test_references_alone_is_enough(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    sent = await invitation_id(seda)
    thread = sent.replace("<inv.", "<thread.").split(".")
    thread_id = ".".join(thread[:2]) + "@" + DOMAIN + ">"  # <thread.TOKEN@reply.example>
    references = f"<older@mail.example> {thread_id} <x@elsewhere.example>"
    done = await send(seda, reply("7", "t2@mail.example", references=references), [BARE])
    assert done.data == 250
    assert await values(seda, rid) == [7]


async def test_a_damaged_token_in_the_address_falls_back_to_the_thread(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    sent = await invitation_id(seda)
    damaged = f"survey+{sent[5:30]}@{DOMAIN}"  # a truncated token
    done = await send(seda, reply("8", "t3@mail.example", in_reply_to=sent), [damaged])
    assert (done.rcpt, done.data) == ([250], 250)
    assert await values(seda, rid) == [8]


async def test_forged_or_foreign_thread_ids_match_nothing(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    sent = await invitation_id(seda)
    token = sent.split(".")[1]
    forged = sent.replace(token, token[:20] + ("a" if token[20] != "a" else "b") + token[21:])
    foreign = sent.replace(f"@{DOMAIN}>", "@elsewhere.example>")
    for n, header in enumerate([forged, foreign, "<inv.short@reply.example>"]):
        raw = reply("9", f"f{n}@mail.example", sender="eve@attacker.example", in_reply_to=header)
        done = await send(seda, raw, [BARE])
        assert (done.rcpt, done.data) == ([250], 550), header
    assert await seda.answers(rid) == []


async def test_the_sender_matches_when_spf_vouches_for_it(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    seda.dns.zone.txt("example.ir", "v=spf1 ip4:127.0.0.1 -all")  # the client is 127.0.0.1
    raw = reply("10", "s1@mail.example")
    done = await send(seda, raw, [BARE], mail_from="leila@example.ir")
    assert done.data == 250
    assert await values(seda, rid) == [10]
    assert ("example.ir", "TXT") in seda.dns.zone.queries  # asked the DNS server


async def test_an_unauthenticated_sender_matches_nothing(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    seda.dns.zone.txt("example.ir", "v=spf1 ip4:192.0.2.1 -all")  # not this client
    raw = reply("10", "s2@mail.example")
    done = await send(seda, raw, [BARE], mail_from="leila@example.ir")
    assert done.data == 550
    assert await seda.answers(rid) == []
    assert await seda.status(rid) == "open"


async def test_with_checks_off_the_from_address_is_trusted(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity={"policy": "off"})
    rid = await seda.invite(ADDRESS)
    done = await send(seda, reply("3", "s3@mail.example"), [BARE])
    assert done.data == 250
    assert await values(seda, rid) == [3]
    assert seda.dns.zone.queries == []  # nothing was looked up


async def test_a_sender_with_two_open_surveys_is_ambiguous(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity={"policy": "off"})
    one = await seda.invite("mailto:Leila@example.ir")
    two = await seda.invite("mailto:leila@example.ir")
    done = await send(seda, reply("3", "s4@mail.example", sender="Leila@Example.ir"), [BARE])
    assert done.data == 550
    assert await seda.answers(one) == [] and await seda.answers(two) == []
    other = await send(seda, reply("4", "s5@mail.example", sender="nobody@example.ir"), [BARE])
    assert other.data == 550


async def test_an_auto_reply_without_a_token_is_ignored(make_seda: SedaFactory) -> None:
    seda = await make_seda(authenticity={"policy": "off"})
    rid = await seda.invite(ADDRESS)
    await seda.relay.wait(1)
    raw = reply("I am away", "a1@mail.example", extra="Auto-Submitted: auto-replied\r\n")
    done = await send(seda, raw, [BARE])
    assert done.data == 250
    assert await seda.answers(rid) == []
    await asyncio.sleep(0.3)
    assert len(seda.relay.sent) == 1  # no answer to a machine
