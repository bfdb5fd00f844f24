"""Which messages a machine sent (never answers), and which addresses a bounce says are dead."""

from __future__ import annotations

import pytest

from email_in.automatic import automatic, hard_bounces
from email_in.inbound import parse
from tests.email.conftest import DATA

PERSON = "From: a@b.example\r\nSubject: Re: survey\r\nContent-Type: text/plain\r\n"
HEADERS = [
    ("a person", "", "a@b.example", None),
    ("auto-submitted no", "Auto-Submitted: no\r\n", "a@b.example", None),
    ("auto-submitted no with comment", "Auto-Submitted: no (human reply)\r\n", "a@b.example", None),
    ("auto-submitted no, comment unspaced", "Auto-Submitted: No(typed by a person)\r\n", "a@b.example", None),
    ("auto-replied with comment", "Auto-Submitted: auto-replied (vacation)\r\n", "a@b.example", "auto-submitted"),
    ("auto-replied", "Auto-Submitted: auto-replied\r\n", "a@b.example", "auto-submitted"),
    ("auto-generated with comment", "Auto-Submitted: auto-generated; owner-email=x\r\n", "a@b.example", "auto-submitted"),
    ("auto-notified", "Auto-Submitted: Auto-Notified\r\n", "a@b.example", "auto-submitted"),
    ("precedence bulk", "Precedence: bulk\r\n", "a@b.example", "bulk precedence"),
    ("precedence junk", "Precedence: JUNK\r\n", "a@b.example", "bulk precedence"),
    ("precedence list", "Precedence: list\r\n", "a@b.example", "bulk precedence"),
    ("precedence first-class", "Precedence: first-class\r\n", "a@b.example", None),
    ("x-autoreply", "X-Autoreply: yes\r\n", "a@b.example", "x-autoreply"),
    ("x-autorespond", "X-Autorespond: Out of office\r\n", "a@b.example", "x-autorespond"),
    ("mailing list", "List-Id: <team.lists.example>\r\n", "a@b.example", "list-id"),
    ("null return path", "", "<>", "empty return path"),
    ("empty return path", "", "", "empty return path"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "extra", "mail_from", "reason"), HEADERS, ids=[h[0] for h in HEADERS]
)
def test_automatic(label: str, extra: str, mail_from: str, reason: str | None) -> None:
    message = parse((PERSON + extra + "\r\n9\r\n").encode())
    found = automatic(message, mail_from)
    assert (found.reason if found else None) == reason


def test_a_hard_bounce_names_its_dead_recipients() -> None:
    raw = (DATA / "bounce_dsn_hard.eml").read_bytes().replace(b"{{address}}", b"Dead@Example.COM")
    found = automatic(parse(raw), "<>")
    assert found is not None and found.report and found.hard_bounced == ("dead@example.com",)


def test_a_delay_notice_is_not_a_hard_bounce() -> None:
    raw = (DATA / "bounce_dsn_delayed.eml").read_bytes().replace(b"{{address}}", b"x@example.com")
    found = automatic(parse(raw), "")
    assert found is not None and found.report and found.hard_bounced == ()


def test_a_report_of_another_type_is_no_bounce() -> None:
    raw = (
        b"From: a@b.example\r\nContent-Type: multipart/report; report-type=disposition-notification;"
        b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nread\r\n--b--\r\n'
    )
    assert hard_bounces(parse(raw)) == ()
    assert automatic(parse(raw), "a@b.example") is None
