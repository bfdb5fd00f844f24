"""Real replies (tests/data/email/*.eml) through Seda's SMTP server, each with what it means."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email import message_from_bytes, policy
from typing import Any

import pytest

from tests.answer_schema import assert_valid_answer
from tests.conftest import read_jsonl
from tests.email.conftest import DATA, Seda, SedaFactory, fixture, plain_reply, reply_to, send

IGNORED = "ignored"
BOUNCED = "bounced"
NOT_THE_QUESTION = object()


@dataclass(frozen=True)
class Case:
    """One stored reply, the survey it answers and what Seda should make of it."""

    file: str
    survey: str
    language: str
    expected: Any  # the answer's value, or IGNORED / BOUNCED
    raw: str | None = None
    question: str | None = None
    before: tuple[str, ...] = ()  # plain replies sent first, to reach a later question
    purpose: str = "survey"
    mail_from: str | None = None  # the envelope sender; the respondent when None


CASES = [
    Case("gmail_en_top.eml", "post_call_nps", "en", 9, "9", "nps"),
    Case("gmail_fa_top.eml", "post_call_nps", "fa", 9, "۹", "nps"),
    Case("gmail_ar_top.eml", "post_call_nps", "ar", 8, "٨", "nps"),
    Case("outlook_en_top.eml", "issue_resolved", "en", True, "Yes, it was fixed.", "resolved"),
    Case("outlook_ar_1256.eml", "issue_resolved", "ar", True, "نعم، تم حل المشكلة", "resolved"),
    Case("outlook_fa_html_only.eml", "issue_resolved", "fa", False, "خیر", "resolved"),
    Case("apple_en_iphone.eml", "post_call_nps", "en", 8, "8", "nps"),
    Case("apple_fa_iphone.eml", "issue_resolved", "fa", True, "بله، حل شد", "resolved"),
    Case("thunderbird_en_bottom.eml", "post_call_nps", "en", 7, "7", "nps"),
    Case("thunderbird_fa_bottom.eml", "ticket_csat", "fa", 5, "پنج", "csat"),
    Case("arabic_iso88596_original_message.eml", "issue_resolved", "ar", False, "لا", "resolved"),
    Case(
        "yahoo_en_html_only.eml", "issue_resolved", "en",
        "The app still crashes when I open my invoices.\nIt started after the last update.",
        question="still_wrong", before=("No",),
    ),
    Case("gmail_ar_new_attribution_bottom.eml", "issue_resolved", "ar", False, "لا", "resolved"),
    Case("thunderbird_en_answer_like_header.eml", "post_call_nps", "en", 8, "On balance 8", "nps"),
    Case("gmail_en_greeting.eml", "post_call_nps", "en", 9, "9", "nps"),
    Case("gmail_fa_greeting.eml", "post_call_nps", "fa", 9, "۹", "nps"),
    Case("gmail_fa_greeting_html_only.eml", "post_call_nps", "fa", 9, "۹", "nps"),
    Case("outlook_en_greeting_sentence.eml", "post_call_nps", "en", 9, "I would give you a 9.", "nps"),
    Case("outlook_en_greeting_html.eml", "post_call_nps", "en", 9, "9", "nps"),
    Case("outlook_ar_greeting.eml", "issue_resolved", "ar", True, "نعم، تم حل المشكلة", "resolved"),
    Case("outlook_en_signature_no_dashes.eml", "post_call_nps", "en", 9, "9", "nps"),
    Case("empty_plain_part_html.eml", "post_call_nps", "en", 9, "9", "nps"),
    Case(
        "gmail_en_text_paragraphs.eml", "issue_resolved", "en",
        "The app still crashes when I open my invoices.\n\n"
        "It started after the last update, on both of my phones.",
        question="still_wrong", before=("No",),
    ),
    Case("auto_reply_vacation.eml", "post_call_nps", "en", IGNORED),
    Case("autoresponder_precedence.eml", "post_call_nps", "en", IGNORED),
    Case("bounce_dsn_hard.eml", "post_call_nps", "en", BOUNCED, purpose="bounce", mail_from=""),
    Case("bounce_dsn_delayed.eml", "post_call_nps", "en", IGNORED, purpose="bounce", mail_from=""),
]  # fmt: skip


def test_every_fixture_has_a_case() -> None:
    assert {c.file for c in CASES} == {p.name for p in DATA.glob("*.eml")}


@pytest.mark.parametrize("case", CASES, ids=[c.file.removesuffix(".eml") for c in CASES])
async def test_reply(seda: Seda, case: Case) -> None:
    address = "mailto:respondent@example.net"
    rid = await seda.invite(address, case.survey, case.language)
    await seda.relay.wait(1)
    for n, text in enumerate(case.before):
        done = await send(seda, plain_reply(rid, text, f"before-{n}@x"), [reply_to(rid)])
        assert done.data == 250
    raw = fixture(case.file, rid, address.removeprefix("mailto:"))
    sender = address.removeprefix("mailto:") if case.mail_from is None else case.mail_from
    done = await send(seda, raw, [reply_to(rid, case.purpose)], mail_from=sender)
    assert done.rcpt == [250] and done.data == 250

    answers = await seda.answers(rid)
    for answer in answers:
        assert_valid_answer(answer)
    emails_before = 1 + len(case.before)
    if case.expected in (IGNORED, BOUNCED):
        assert len(answers) == len(case.before)
        await asyncio.sleep(0.2)  # Seda never answers a machine: nothing more goes out
        assert len(seda.relay.sent) == emails_before
        expected_status = "abandoned" if case.expected == BOUNCED else "open"
        assert await seda.status(rid) == expected_status
        if case.expected == BOUNCED:
            await _wait_abandoned(seda, rid, "bounced")
        return

    assert len(answers) == len(case.before) + 1
    answer = answers[-1]
    message = message_from_bytes(raw, policy=policy.default)
    assert answer["value"] == case.expected
    assert answer["raw"] == (case.raw if case.raw is not None else case.expected)
    assert answer["question_id"] == case.question
    assert (answer["channel"], answer["provider"], answer["input_mode"]) == (
        "email",
        "smtp",
        "text",
    )
    assert answer["message_id"] == str(message["Message-ID"]).strip("<>")
    assert answer["respondent"]["addresses"] == [address]  # the invited address, not From
    assert answer["language"] == case.language
    await seda.relay.wait(emails_before + 1)  # the next question (or the closing) by email


async def test_a_scale_question_reads_only_the_answer_paragraph(seda: Seda) -> None:
    rid = await seda.invite("mailto:respondent@example.net", "post_call_nps", "en")
    await seda.relay.wait(1)
    raw = plain_reply(rid, "Hi,\r\n\r\n9\r\n\r\nLast year I would have said 10.", "scale@x")
    done = await send(seda, raw, [reply_to(rid)])
    assert done.data == 250
    [answer] = await seda.answers(rid)
    assert (answer["question_id"], answer["value"], answer["raw"]) == ("nps", 9, "9")


async def test_a_text_answer_keeps_its_paragraphs_when_the_session_is_read_from_the_store(
    make_seda: SedaFactory,
) -> None:
    first = await make_seda()
    rid = await first.invite("mailto:respondent@example.net", "issue_resolved", "en")
    await first.relay.wait(1)
    assert (await send(first, plain_reply(rid, "No", "no@x"), [reply_to(rid)])).data == 250
    second = await make_seda()  # another process over the same database: nothing cached
    assert second.gateway.cached_open_response(rid) is None
    raw = plain_reply(rid, "Hi,\r\n\r\nIt crashes.\r\n\r\nSince Monday.\r\n\r\nThanks", "t@x")
    assert (await send(second, raw, [reply_to(rid)])).data == 250
    answers = await second.answers(rid)
    assert [(a["question_id"], a["raw"]) for a in answers] == [
        ("resolved", "No"),
        ("still_wrong", "It crashes.\n\nSince Monday."),
    ]


async def test_stop_above_a_name_opts_out_at_a_text_question(seda: Seda) -> None:
    rid = await seda.invite("mailto:respondent@example.net", "issue_resolved", "en")
    await seda.relay.wait(1)
    assert (await send(seda, plain_reply(rid, "No", "no@x"), [reply_to(rid)])).data == 250
    assert (
        await send(seda, plain_reply(rid, "STOP\r\n\r\nJohn", "stop@x"), [reply_to(rid)])
    ).data == 250
    await _wait_abandoned(seda, rid, "opted_out")
    assert [a["question_id"] for a in await seda.answers(rid)] == ["resolved"]


async def _wait_abandoned(seda: Seda, response_id: str, reason: str) -> None:
    for _ in range(100):
        events = read_jsonl(seda.tmp_path / "answers.jsonl")
        if any(
            e["type"] == "response.abandoned" and e["data"]["response_id"] == response_id
            for e in events
        ):
            event = next(e for e in events if e["type"] == "response.abandoned")
            assert event["data"]["reason"] == reason
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no response.abandoned event")
