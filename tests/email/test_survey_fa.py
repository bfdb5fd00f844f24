"""A whole two-question survey answered by email in Persian, as a Gmail user would."""

from __future__ import annotations

import asyncio
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime

from tests.answer_schema import assert_valid_answer
from tests.conftest import read_jsonl
from tests.email.conftest import Seda, Sent, send

ADDRESS = "mailto:maryam.h@example.ir"


def reply(to: Sent, answer: str, message_id: str) -> bytes:
    """A Gmail-style Persian reply: the answer on top, the email quoted under a «نوشت:» line."""
    original = to.message
    plain = original.get_body(preferencelist=("plain",))
    assert plain is not None
    quoted = "\n".join(f"> {line}" if line else ">" for line in plain.get_content().splitlines())
    sent_at = parsedate_to_datetime(str(original["Date"]))
    header = (
        f"\u200fدر تاریخ {sent_at:%Y/%m/%d} ساعت {sent_at:%H:%M} {original['From']} نوشت:\u200f"
    )
    message = EmailMessage()
    message["From"] = "مریم حسینی <maryam.h@example.ir>"
    message["To"] = original["Reply-To"]
    message["Subject"] = f"Re: {original['Subject']}"
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = f"<{message_id}>"
    message["In-Reply-To"] = original["Message-ID"]
    message["References"] = f"{original['References']} {original['Message-ID']}"
    message.set_content(f"{answer}\n\n{header}\n\n{quoted}\n")
    return message.as_bytes(policy=policy.SMTP)  # CRLF line ends, as on the wire


async def test_a_persian_survey_by_email(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS, "ticket_csat", "fa", context={"ticket": "T-4411"})
    [invitation] = await seda.relay.wait(1)
    text = invitation.message.get_body(preferencelist=("plain",))
    assert text is not None
    assert "درخواست پشتیبانی شما بسته شد" in text.get_content()  # the survey's intro
    assert "از ۱ تا ۵" in text.get_content()

    reply_address = str(invitation.message["Reply-To"])
    first = await send(seda, reply(invitation, "۴", "CAF1@mail.gmail.com"), [reply_address])
    assert first.data == 250

    second = (await seda.relay.wait(2))[1]
    body = second.message.get_body(preferencelist=("plain",))
    assert body is not None and "کدام مورد برای شما مهم‌تر بود؟" in body.get_content()
    assert "۱. سرعت پاسخگویی" in body.get_content()
    assert second.message["Reply-To"] == reply_address  # one address for the whole response
    # Threaded under Maryam's reply, in the same thread as the invitation.
    assert second.message["In-Reply-To"] == "<CAF1@mail.gmail.com>"
    assert (
        second.message["References"] == f"{invitation.message['References']} <CAF1@mail.gmail.com>"
    )
    assert second.message["Subject"] == f"Re: {invitation.message['Subject']}"
    done = await send(seda, reply(second, "سرعت", "CAF2@mail.gmail.com"), [reply_address])
    assert done.data == 250

    closing = (await seda.relay.wait(3))[2]
    thanks = closing.message.get_body(preferencelist=("plain",))
    assert thanks is not None and "سپاس از نظر شما" in thanks.get_content()
    assert await seda.status(rid) == "completed"

    answers = await seda.answers(rid)
    for answer in answers:
        assert_valid_answer(answer)
    assert [(a["question_id"], a["value"], a["raw"]) for a in answers] == [
        ("csat", 4, "۴"),
        ("mattered_most", "speed", "سرعت"),
    ]
    assert {a["language"] for a in answers} == {"fa"}
    assert {a["context"]["ticket"] for a in answers} == {"T-4411"}
    assert [a["message_id"] for a in answers] == ["CAF1@mail.gmail.com", "CAF2@mail.gmail.com"]
    for _ in range(100):
        events = read_jsonl(seda.tmp_path / "answers.jsonl")
        if any(e["type"] == "response.completed" for e in events):
            break
        await asyncio.sleep(0.02)
    assert [e["type"] for e in events] == [
        "answer.recorded",
        "answer.recorded",
        "response.completed",
    ]
