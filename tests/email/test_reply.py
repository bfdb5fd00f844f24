"""Reading replies without a server: MIME bodies, quotes and signatures in en, fa and ar."""

from __future__ import annotations

import time

import pytest

from email_in.html_text import html_to_text
from email_in.inbound import parse, read
from email_in.reply import answer_text, first_paragraph, strip_quotes, whole_reply

# (label, body as the respondent's client wrote it, the answer text Seda reads)
BODIES = [
    ("plain", "9", "9"),
    ("crlf and spaces", "  8  \r\n\r\nThanks", "8"),
    ("gmail header wrapped", "7\n\nOn Mon, Jan 6, 2025 at 10:02 AM Seda <\nsurvey+x@r.example> wrote:\n\n> q", "7"),
    ("gmail fa", "۹\n\nدر تاریخ دوشنبه ۶ ژانویهٔ ۲۰۲۵، ساعت ۱۰:۰۲ Seda <s@r.example> نوشت:\n\n> پرسش", "۹"),
    ("fa header with marks", "بله\n\u202bدر تاریخ ۱۴۰۳/۱۰/۱۷ Seda نوشت:\u202c\n> پرسش", "بله"),
    ("ar kataba before name", "نعم\n\nفي الاثنين، ٦ يناير ٢٠٢٥ ١٠:٠٢ ص كتب Seda <s@r.example>:\n\n> سؤال", "نعم"),
    ("ar kataba at end", "لا\n\nبتاريخ 2025/01/06، Seda كتب:\n> سؤال", "لا"),
    ("outlook block", "Yes\n\nFrom: Seda <s@r.example>\nSent: Monday, January 6, 2025 10:02 AM\nTo: x\nSubject: s\n\nq", "Yes"),
    ("outlook fa block", "خیر\n\nاز: Seda\nارسال شده: دوشنبه\nبه: x\nموضوع: s\n\nq", "خیر"),
    ("outlook ar block", "نعم\n\nمن: Seda\nتم الإرسال: الاثنين\nإلى: x\nالموضوع: s\n\nq", "نعم"),
    ("original message", "no\n-----Original Message-----\nFrom: x\nyes", "no"),
    ("original message ar", "لا\n----- الرسالة الأصلية -----\nنعم", "لا"),
    ("underscores", "5\n________________________________\nFrom: x", "5"),
    ("bottom-posted", "On 06/01/2025 10:02, Seda wrote:\n> q1\n> q2\n\n7\n\n-- \nJane", "7"),
    ("interleaved blank quote lines", "> q\n>\n> r\n\n\n6", "6"),
    ("signature only dashes", "10\n--\nAli", "10"),
    ("iphone", "8\n\nSent from my iPhone\n\n> On 6 Jan 2025, at 10:02, Seda <s@r.example> wrote:", "8"),
    ("iphone fa", "۸\n\nارسال شده از iPhone من", "۸"),
    ("android ar", "٧\n\nأرسلت من هاتفي Galaxy", "٧"),
    ("outlook mobile", "3\n\nGet Outlook for Android", "3"),
    ("rtl marks around the answer", "\u200f۹\u200f\n", "۹"),
    ("two-line text answer", "The agent was kind\nbut slow.\n\nBest,\nMaria", "The agent was kind\nbut slow."),
    ("wrote in a sentence is not a header", "He wrote: fine\n\nq", "He wrote: fine"),
    ("forwarded", "ok\n---------- Forwarded message ---------\nFrom: x", "ok"),
    ("empty", "\n\n> only a quote\n", ""),
    ("greeting en", "Hi,\n\n9\n\nThanks,\nJohn\n\nOn Mon, Jan 6, 2025 at 10:02 AM Seda Surveys <surveys@example.com> wrote:\n\n> q", "9"),
    ("greeting en with name", "Hi John,\n\n9\n\n> q", "9"),
    ("greeting en dear team", "Dear Seda team,\n\nYes, it was fixed.\n\nKind regards,\nMaria", "Yes, it was fixed."),
    ("greeting en good morning", "Good morning!\n\n7", "7"),
    ("greeting then sentence", "Hello,\n\nI would give you a 9.\n\nBest regards,\nJohn\n\nFrom: Seda\nSent: Monday\n\nq", "I would give you a 9."),
    ("greeting fa", "سلام\n\n۹\n\nبا تشکر\n\n\u202bدر تاریخ دوشنبه ۶ ژانویهٔ ۲۰۲۵، ساعت ۱۰:۰۲ Seda <s@r.example> نوشت:\u202c\n\n> پرسش", "۹"),
    ("greeting fa chained", "سلام و وقت بخیر\n\nبله\n\nبا احترام", "بله"),
    ("greeting fa with name", "سلام آقای رضایی،\n\nخیر", "خیر"),
    ("greeting ar", "مرحباً،\n\nنعم، تم حل المشكلة\n\nمع التحية\n\nمن: Seda\nتم الإرسال: الاثنين\n\nسؤال", "نعم، تم حل المشكلة"),
    ("greeting ar salam", "السلام عليكم ورحمة الله وبركاته\n\n٨", "٨"),
    ("two greeting paragraphs", "Dear Maria,\n\nGood morning,\n\n6", "6"),
    ("greeting and answer in one paragraph", "Hi,\n9\n\n> q", "Hi,\n9"),
    ("greeting only", "Hi,\n\n> q", "Hi,"),
    ("greeting only fa", "سلام\n\n\u202bدر تاریخ دوشنبه ۶ ژانویهٔ ۲۰۲۵، ساعت ۱۰:۰۲ Seda <s@r.example> نوشت:\u202c\n\n> پرسش", "سلام"),
    ("greeting then only a sign-off", "Hi,\n\nThanks,\nJohn\n\n> q", "Hi,"),
    ("greeting then only a signature", "Hello,\n\nJohn Smith\nTel: +44 20 7946 0000", "Hello,"),
    ("hi yes is an answer", "Hi, yes\n\nThe agent fixed it", "Hi, yes"),
    ("salam bale is an answer", "سلام، بله\n\nعلی", "سلام، بله"),
    ("salam nine is an answer", "سلام، نه\n\nعلی", "سلام، نه"),
    ("sign-off under the answer", "9\nThanks,\nJohn", "9"),
    ("sign-off fa under the answer", "بله\nبا تشکر\nعلی", "بله"),
    ("sign-off ar under the answer", "لا\nمع التحية", "لا"),
    ("thanks as the answer's first line stays", "Thanks\n\n> q", "Thanks"),
    ("a sentence starting with thanks stays", "The agent was kind\nThank you for asking about it", "The agent was kind\nThank you for asking about it"),
    ("signature without dashes", "9\nJohn Smith\nTel: +44 20 7946 0000\n\nFrom: Seda\nSent: Monday\n\nq", "9"),
    ("signature with title and company", "8\nJohn Smith\nHead of Support\nAcme Ltd\nMobile: +44 7700 900123\nwww.acme.example", "8"),
    ("signature fa", "۹\nعلی رضایی\nتلفن: ۰۲۱-۸۸۸۸۸۸۸۸\nموبایل: ۰۹۱۲۰۰۰۰۰۰۰", "۹"),
    ("signature ar", "نعم\nأحمد المنصوري\nجوال: ٠٥٠١٢٣٤٥٦٧", "نعم"),
    ("signature phone alone", "10\n+98 912 000 0000", "10"),
    ("a two-line answer is not a signature", "The agent was kind\nbut slow.\nJohn", "The agent was kind\nbut slow.\nJohn"),
    ("only a signature keeps its first line", "John Smith\nTel: +44 20 7946 0000", "John Smith"),
    ("ar gmail tamat kitabat", "نعم\n\n\u202bفي الاثنين، 6 يناير 2025 في 10:02 ص تمت كتابة ما يلي بواسطة Seda Surveys <surveys@example.com>:\u202c\n\n> سؤال", "نعم"),
    ("ar gmail tamat kitabat bottom-posted", "\u202bفي الاثنين، 6 يناير 2025 في 10:02 ص تمت كتابة ما يلي بواسطة Seda Surveys <surveys@example.com>:\u202c\n\n> سؤال\n\nلا", "لا"),
    ("ar gmail tamat kitabat empty", "\u202bفي الاثنين، 6 يناير 2025 في 10:02 ص تمت كتابة ما يلي بواسطة Seda Surveys <surveys@example.com>:\u202c\n\n> سؤال\n", ""),
    ("ar gmail tamat kitabat wrapped", "\u202bفي الاثنين، 6 يناير 2025 في 10:02 ص تمت كتابة ما يلي بواسطة Seda Surveys <\nsurveys@example.com>:\u202c\n> سؤال\n\n٨", "٨"),
    ("ar bitarikh jaa min", "بتاريخ 6 يناير، 2025 10:02 ص، جاء من Seda Surveys <surveys@example.com>:\n> سؤال\n\n٧", "٧"),
    ("ar bitarikh jaa min top", "٧\n\nبتاريخ 6 يناير، 2025 10:02 ص، جاء من Seda Surveys <surveys@example.com>:\n\nسؤال", "٧"),
    ("answer like a header above one", "On balance 8\nOn Mon, Jan 6, 2025 at 10:02 AM Seda Surveys <surveys@example.com> wrote:\n> q", "On balance 8"),
    ("answer like a header above a wrapped one", "On balance 8\nOn Mon, Jan 6, 2025 at 10:02 AM Seda Surveys <\nsurveys@example.com> wrote:\n> q", "On balance 8"),
    ("two-line answer like a header above one", "On balance\n8\nOn Mon, Jan 6, 2025 at 10:02 AM Seda Surveys <surveys@example.com> wrote:\n> q", "On balance\n8"),
    ("fa answer like a header above one", "در کل ۸\nدر تاریخ دوشنبه ۶ ژانویهٔ ۲۰۲۵، ساعت ۱۰:۰۲ Seda <s@r.example> نوشت:\n> پرسش", "در کل ۸"),
    ("ar answer like a header above one", "في رأيي ٩\nفي الاثنين، ٦ يناير ٢٠٢٥ ١٠:٠٢ ص كتب Seda <s@r.example>:\n> سؤال", "في رأيي ٩"),
    ("ar answer like a header above gmail's new one", "في رأيي ٩\n\u202bفي الاثنين، 6 يناير 2025 في 10:02 ص تمت كتابة ما يلي بواسطة Seda Surveys <surveys@example.com>:\u202c\n> سؤال", "في رأيي ٩"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "body", "expected"), BODIES, ids=[b[0] for b in BODIES])
def test_stripping(label: str, body: str, expected: str) -> None:
    assert first_paragraph(strip_quotes(body)) == expected


# (label, body, the text answer Seda reads for a free-text question)
WHOLE = [
    ("one paragraph", "The agent was kind\nbut slow.", "The agent was kind\nbut slow."),
    ("paragraphs up to the quote", "First.\n\nSecond.\n\nOn Mon, Jan 6, 2025 at 10:02 AM Seda <s@r.example> wrote:\n> q", "First.\n\nSecond."),
    ("greeting and sign-off left out", "Hi,\n\nThe app crashes.\n\nIt started last week.\n\nThanks,\nJohn\n\n> q", "The app crashes.\n\nIt started last week."),
    ("signature paragraph left out", "It is slow.\n\nStill slow today.\n\nJohn Smith\nTel: +44 20 7946 0000", "It is slow.\n\nStill slow today."),
    ("signature inside the last paragraph", "It is slow.\n\nStill slow.\nJohn Smith\nTel: +44 20 7946 0000\n\nP.S.", "It is slow.\n\nStill slow."),
    ("fa", "سلام\n\nبرنامه هنوز بسته می‌شود.\n\nاز به‌روزرسانی آخر شروع شد.\n\nبا تشکر\nعلی", "برنامه هنوز بسته می‌شود.\n\nاز به‌روزرسانی آخر شروع شد."),
    ("ar bottom-posted", "في الاثنين، ٦ يناير ٢٠٢٥ ١٠:٠٢ ص كتب Seda <s@r.example>:\n> سؤال\n\nالتطبيق يتوقف.\n\nمنذ التحديث الأخير.\n\nمع التحية", "التطبيق يتوقف.\n\nمنذ التحديث الأخير."),
    ("nothing", "> q", ""),
]  # fmt: skip


@pytest.mark.parametrize(("label", "body", "expected"), WHOLE, ids=[w[0] for w in WHOLE])
def test_a_text_answer_keeps_its_paragraphs(label: str, body: str, expected: str) -> None:
    assert whole_reply(strip_quotes(body)) == expected


def test_read_gives_the_answer_paragraph_and_the_whole_reply() -> None:
    raw = _mime(
        "From: a@b.example\nContent-Type: text/plain; charset=utf-8",
        b"Hi,\r\n\r\n9\r\n\r\nLast year I said 10.\r\n\r\nThanks\r\n\r\n> q\r\n",
    )
    reading = read(raw, "a@b.example")
    assert (reading.text, reading.full_text) == ("9", "9\n\nLast year I said 10.")


def _mime(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


MIME = [
    ("utf-8 8bit", 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit', "۷\r\n".encode(), "۷"),
    ("windows-1256 8bit", "Content-Type: text/plain; charset=windows-1256\nContent-Transfer-Encoding: 8bit", "نعم\r\n".encode("cp1256"), "نعم"),
    ("iso-8859-6 qp", "Content-Type: text/plain; charset=iso-8859-6\nContent-Transfer-Encoding: quoted-printable", b"=E6=D9=E5\r\n", "نعم"),
    ("utf-8 base64", "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64", b"2KjZhNmHCg==\r\n", "بله"),
    ("no charset, utf-8 bytes", "Content-Type: text/plain", "ده\r\n".encode(), "ده"),
    ("no content type at all", "Subject: x", b"4\r\n", "4"),
    ("html only", "Content-Type: text/html; charset=utf-8", "<div dir=rtl>\u200fخیر</div><blockquote>پرسش</blockquote>".encode(), "خیر"),
    ("html entities", "Content-Type: text/html; charset=utf-8", b"<p>Yes &amp; thanks&nbsp;</p><p>Jo</p>", "Yes & thanks"),
    ("html script hidden", "Content-Type: text/html; charset=utf-8", b"<style>p{}</style><script>x=1</script><p>9</p>", "9"),
    ("iso-8859-6-i", "Content-Type: text/plain; charset=ISO-8859-6-I", b"\xe6\xd9\xe5\r\n", "نعم"),
    ("iso-8859-6-e qp", "Content-Type: text/plain; charset=iso-8859-6-e\nContent-Transfer-Encoding: quoted-printable", b"=E4=C7\r\n", "لا"),
    ("x-mac-arabic", "Content-Type: text/plain; charset=x-mac-arabic", "نعم\r\n".encode("mac-arabic"), "نعم"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "headers", "body", "expected"), MIME, ids=[m[0] for m in MIME])
def test_mime_bodies(label: str, headers: str, body: bytes, expected: str) -> None:
    raw = _mime(f"From: a@b.example\nMIME-Version: 1.0\n{headers}", body)
    assert answer_text(parse(raw)) == expected


def test_multipart_prefers_the_text_part() -> None:
    raw = _mime(
        'From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"',
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\ntext\r\n--b--\r\n",
    )
    assert answer_text(parse(raw)) == "text"


@pytest.mark.parametrize(
    "plain", [b"", b"\r\n \r\n", b"\xe2\x80\x8f\r\n"], ids=["empty", "blank", "rlm"]
)
def test_an_empty_text_part_gives_way_to_the_html_part(plain: bytes) -> None:
    raw = _mime(
        'From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"',
        b'--b\r\nContent-Type: text/plain; charset="UTF-8"\r\n\r\n' + plain + b"\r\n--b\r\n"
        b'Content-Type: text/html; charset="UTF-8"\r\n\r\n<div>9</div>\r\n--b--\r\n',
    )
    assert answer_text(parse(raw)) == "9"


def test_an_attachment_only_message_has_no_answer() -> None:
    raw = _mime(
        'From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"',
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\n"
        b"JVBERi0=\r\n--b--\r\n",
    )
    assert answer_text(parse(raw)) == ""


def test_html_quotes_become_marked_lines() -> None:
    text = html_to_text("<div>a</div><div><br></div><blockquote><div>b</div></blockquote><hr>c")
    assert text.splitlines() == ["a", "", "> b", "", "_" * 32, "c"]


HTML_EDGES = [
    ("a > inside a quoted value", '<a title="x>y">9</a>', "9"),
    ("a lone < is text", "a < b and c > d", "a < b and c > d"),
    ("a comment", "<p>9</p><!-- note <p>x</p> --><p>ok</p>", "9\n\nok"),
    ("an unterminated comment hides the rest", "<p>9</p><!-- open <p>gone", "9"),
    ("declarations are not text", "<!DOCTYPE html><![CDATA[x]]><?xml v?><p>9</p>", "9"),
    ("outlook conditional comments", "<!--[if mso]><p>x</p><![endif]--><p>9</p>", "9"),
    ("a tag left open is text", "<p>1<2</p>", "1<2"),
    ("a quote left open is text", "<p>9</p><a x='<p>ok</p>", "9\n\n<a x='\n\nok"),
]


@pytest.mark.parametrize(("label", "html", "text"), HTML_EDGES, ids=[c[0] for c in HTML_EDGES])
def test_html_edges(label: str, html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_hostile_nesting_is_not_followed_past_its_caps() -> None:
    # 5,000 open elements and quote levels: each stray end tag looked through all of them,
    # and each line carried a "> " per level (quadratic time and memory: a MiB of this HTML
    # made lines of 100,000 levels, gigabytes).
    html = "<blockquote><a x=1>9" * 5_000 + "</style>" * 20_000
    began = time.process_time()
    lines = html_to_text(html).splitlines()
    assert time.process_time() - began < 2.0
    depths = [(len(line) - len(line.lstrip("> "))) // 2 for line in lines]
    assert max(depths) == 16  # html_text.MAX_QUOTES


def test_a_message_without_message_id_gets_a_stable_digest() -> None:
    raw = _mime("From: a@b.example\nContent-Type: text/plain", b"9\r\n")
    first, again = read(raw, "a@b.example"), read(raw, "a@b.example")
    assert first.message_id == again.message_id and first.message_id.startswith("sha256:")


def test_a_very_long_answer_is_capped() -> None:
    raw = _mime("From: a@b.example\nContent-Type: text/plain", b"word " * 2000 + b"\r\n")
    assert len(answer_text(parse(raw))) == 4096


# (the From header as written, the author Seda takes: one plain address, else None)
AUTHORS = [
    ("leila@example.ir", "leila@example.ir"),
    ("Leila <leila@example.ir>", "leila@example.ir"),
    ("leila@example.ir (Leila)", "leila@example.ir"),
    ('"l@example.ir"', "l@example.ir"),
    ("l@EXAMPLE.IR", "l@EXAMPLE.IR"),
    ("l..x@example.ir", "l..x@example.ir"),
    ("~!#$%&'*+/=?^_`{|}-@example.ir", "~!#$%&'*+/=?^_`{|}-@example.ir"),
    ("l@example.ir\t", "l@example.ir"),
    ("l@ex\r\n ample.ir", None),
    ("l@@example.ir", None),
    ("l@[127.0.0.1]", None),
    ('"l x"@example.ir', None),
    ("a@b.example, c@d.example", None),
    ("", None),
]  # fmt: skip


@pytest.mark.parametrize(("value", "author"), AUTHORS)
def test_the_author_is_the_one_plain_from_address(value: str, author: str | None) -> None:
    raw = f"From: {value}\r\nMessage-ID: <a@b>\r\n\r\n7\r\n".encode()
    assert read(raw, "x@example.org").author == author


def test_two_from_headers_name_no_author() -> None:
    raw = b"From: a@example.ir\r\nFrom: a@example.ir\r\n\r\n7\r\n"
    assert read(raw, "x@example.org").author is None
