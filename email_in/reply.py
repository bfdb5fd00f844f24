"""Reading a reply: the body as text (any charset, HTML too), without quotes and signatures.

Quote headers, separators and signatures of Gmail, Outlook, Apple Mail and Thunderbird in
English, Persian and Arabic end the reply; `>` lines are skipped, so bottom-posted answers
below a quote are found too. Of what is left, the first paragraph after a greeting is the
answer text; a free-text answer keeps every paragraph up to the sign-off or signature.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message
from itertools import islice

from email_in import courtesy
from email_in.html_text import html_to_text

MAX_LINES = 2000  # an answer is near the top; a huge body is not read to its end
MAX_TEXT = 4096
MAX_DEPTH = 10  # multipart nesting Seda looks into
# Marks that right-to-left mail clients put around lines (LRM, RLM, ALM, embeddings, isolates).
_MARKS = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_EDGES = _MARKS + " \t\u00a0\u3000"
# Charset names mail clients write that Python's codecs do not know. ISO-8859-6-I and -E
# (RFC 1556: implicit and explicit bidi ordering) are ISO-8859-6 bytes; Apple Mail's
# x-mac-arabic is the codec mac-arabic.
_CHARSET_ALIASES = {
    "iso-8859-6-i": "iso-8859-6",
    "iso-8859-6-e": "iso-8859-6",
    "iso_8859-6-i": "iso-8859-6",
    "iso_8859-6-e": "iso-8859-6",
    "x-mac-arabic": "mac-arabic",
}

# "On Mon, 1 Jan 2024 at 10:00, Seda <survey+...@reply.example> wrote:"
_WROTE_EN = re.compile(r"\bwrote\s*:$", re.IGNORECASE)
# Gmail fa: «در تاریخ سه‌شنبه ۲ ژانویهٔ ۲۰۲۴ ساعت ۱۰:۰۰ Seda <...> نوشت:»
_WROTE_FA = re.compile(r"نوشت(?:ه(?:\s*است)?)?\s*:$")
# Gmail ar: «في الثلاثاء، ٢ يناير ٢٠٢٤ في ١٠:٠٠ ص كتب Seda <...>:», others «... كتب:»;
# Gmail ar now: «في الاثنين، 6 يناير 2025 في 10:02 ص تمت كتابة ما يلي بواسطة Seda <...>:»;
# «بتاريخ 6 يناير، 2025 10:02 ص، جاء من Seda <...>:».
_WROTE_AR = re.compile(
    r"(?:(?:^|\s)كتب(?:\s.{0,200})?|(?:^|\s)تمت كتابة ما يلي بواسطة\s.{1,200}"
    r"|^بتاريخ\s.{1,200}\sجاء من\s.{1,200}):$"
)
_HEADER_START = re.compile(r"^(?:On|Le|Am|در|في|بتاريخ)\b", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"^(?:_{8,}|-{2,}\s*(?:original message|forwarded message|پیام اصلی|پیام ارسال‌?\s?شده"
    r"|الرسالة الأصلية|الرسالة الأصلیة|رسالة معاد توجيهها)\s*-{2,}|begin forwarded message:)$",
    re.IGNORECASE,
)
# Outlook's block: "From: ..." followed by "Sent:" / "To:" / "Subject:" (and localised).
_OUTLOOK_FROM = re.compile(r"^\*?(?:From|از|من|فرستنده)\*?\s*:\s*\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\*?(?:Sent|Date|To|Cc|Subject|ارسال شده|ارسال شد|تاریخ|به|گیرنده|موضوع"
    r"|تم الإرسال|تاريخ الإرسال|أرسلت|أرسل|التاريخ|إلى|الموضوع|نسخة)\*?\s*:",
    re.IGNORECASE,
)
_DEVICE = re.compile(
    r"^(?:Sent from (?:my )?\S.{0,60}|Sent via \S.{0,60}|Get Outlook for \S.{0,40}"
    r"|(?:ارسال|فرستاده)[\s\u200c]?شده از .{1,60}"
    r"|(?:أرسلت|أُرسلت|مرسل|تم الإرسال|تم إرساله|أُرسل) من .{1,60})$",
    re.IGNORECASE,
)


def body_part(message: Message) -> Message | None:
    """The part a person wrote in: text/plain preferred, else text/html; no attachments."""
    found = _body_parts(message)
    return found[0][0] if found else None


def _body_parts(message: Message) -> list[tuple[Message, str]]:
    """The first text/plain and the first text/html part, in that order, with their subtypes
    (each part's Content-Type is looked up once)."""
    found = list(islice(_text_parts(message, 0), 50))
    chosen: list[tuple[Message, str]] = []
    for subtype in ("plain", "html"):
        for part, its_subtype in found:
            if its_subtype == subtype:
                chosen.append((part, subtype))
                break
    return chosen


def body_text(message: Message) -> str:
    """The message body as text: text/plain preferred, HTML turned into text, any charset.

    A text/plain part with nothing but white space gives way to the HTML part: some clients
    send an empty plain alternative beside the HTML one that holds the reply.
    """
    text = ""
    for part, subtype in _body_parts(message):
        text = _decoded(part, subtype)
        if text.strip(_EDGES + "\r\n"):
            return text
    return text


def _decoded(part: Message, subtype: str) -> str:
    payload = part.get_payload(decode=True)  # undoes base64 and quoted-printable
    if not isinstance(payload, bytes):
        return ""
    # No charset declared: read as UTF-8, which is what mail without one mostly is.
    charset = part.get_content_charset() or "utf-8"
    charset = _CHARSET_ALIASES.get(charset, charset)
    try:
        content = payload.decode(charset, "replace")
    except LookupError:
        content = payload.decode("utf-8", "replace")
    if subtype == "html":
        return html_to_text(content)
    return content


def answer_text(message: Message) -> str:
    """The respondent's answer in a reply: the first paragraph left after stripping."""
    return first_paragraph(strip_quotes(body_text(message)))[:MAX_TEXT]


def answer_texts(message: Message) -> tuple[str, str]:
    """The answer paragraph (for scales, yes/no and choices) and every paragraph the
    respondent wrote (for a text question), read from one decoding of the body."""
    lines = strip_quotes(body_text(message))
    return first_paragraph(lines)[:MAX_TEXT], whole_reply(lines)[:MAX_TEXT]


def _text_parts(part: Message, depth: int) -> Iterator[tuple[Message, str]]:
    """The text parts (and their subtypes) in a message, depth first."""
    if depth > MAX_DEPTH:
        return
    maintype, _, subtype = part.get_content_type().partition("/")
    if maintype == "message":
        return  # a forwarded or attached message is not what the respondent wrote
    if part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _text_parts(sub, depth + 1)
    elif maintype == "text" and not _attachment(part):
        yield part, subtype


def _attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).split(";")[0].strip().lower()
    return disposition == "attachment"


def clean_line(line: str) -> str:
    """A line without the spaces and direction marks around it."""
    return line.strip(_EDGES)


def strip_quotes(text: str) -> list[str]:
    """The lines a respondent wrote: quotes, quote headers and signatures removed."""
    lines = [clean_line(line) for line in text.splitlines()[:MAX_LINES]]
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _ends_reply(lines, i):
            break
        header = _quote_header(lines, i)
        if header:
            after = i + header
            while after < len(lines) and not lines[after]:
                after += 1
            if after < len(lines) and lines[after].startswith(">"):
                i = after  # bottom-posting: skip the quote, the answer may follow it
                continue
            break  # top-posting (or a quote without ">"): the rest is the old message
        if not line.startswith(">"):
            kept.append(line)
        i += 1
    return kept


def first_paragraph(lines: list[str]) -> str:
    """The answer paragraph: the first one after a greeting of its own, without a signature.

    "Hi,\n\n9\n\nThanks,\nJohn" reads as 9. A greeting is passed over only when a paragraph
    that is not a sign-off or a signature follows it: a greeting alone stays the reply, which
    no scale, yes/no or choice question takes.
    """
    paragraphs = _paragraphs(lines)
    if not paragraphs:
        return ""
    return "\n".join(_without_signature(paragraphs[_answer_start(paragraphs)]))


def whole_reply(lines: list[str]) -> str:
    """Every paragraph from the answer paragraph on, up to a sign-off or signature, joined
    by blank lines: the answer to a free-text question."""
    paragraphs = _paragraphs(lines)
    if not paragraphs:
        return ""
    start = _answer_start(paragraphs)
    kept: list[str] = []
    for paragraph in paragraphs[start:]:
        if kept and _closes(paragraph):
            break
        trimmed = _without_signature(paragraph)
        kept.append("\n".join(trimmed))
        if len(trimmed) < len(paragraph):
            break  # the signature started inside this paragraph
    return "\n\n".join(kept)


def _paragraphs(lines: list[str]) -> list[list[str]]:
    """The runs of non-empty lines."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _answer_start(paragraphs: list[list[str]]) -> int:
    """The index of the first paragraph after the greetings that stand alone."""
    start = 0
    while (
        start + 1 < len(paragraphs)
        and all(courtesy.is_greeting(line) for line in paragraphs[start])
        and not _closes(paragraphs[start + 1])
    ):
        start += 1
    return start


def _closes(paragraph: list[str]) -> bool:
    """A paragraph that starts with a sign-off or is all signature: what follows an answer."""
    return courtesy.is_sign_off(paragraph[0]) or _signature_from(paragraph) == 0


def _without_signature(paragraph: list[str]) -> list[str]:
    """The paragraph without a sign-off or signature block under its first line."""
    for i in range(1, len(paragraph)):
        if courtesy.is_sign_off(paragraph[i]):
            return paragraph[:i]
    end = _signature_from(paragraph)
    return paragraph[: max(end, 1)]


def _signature_from(paragraph: list[str]) -> int:
    """Where a signature block ends the paragraph (its length if none): name and title lines
    with at least one contact line ("Tel: …", «جوال: …»), up to the paragraph's end."""
    start, contact = len(paragraph), False
    while start > 0:
        line = paragraph[start - 1]
        if courtesy.is_contact(line):
            contact = True
        elif not _name_like(line):
            break
        start -= 1
    return start if contact else len(paragraph)


def _name_like(line: str) -> bool:
    """A short line without digits or a sentence's end: a name, a title, a company."""
    return (
        len(line) <= 60
        and len(line.split()) <= 6
        and not any(char.isdigit() for char in line)
        and not line.endswith((".", "?", "!", "؟", "…"))
    )


def _ends_reply(lines: list[str], i: int) -> bool:
    line = lines[i]
    if line == "--" or _SEPARATOR.match(line) or _DEVICE.match(line):
        return True
    if _OUTLOOK_FROM.match(line):
        following = [nxt for nxt in lines[i + 1 : i + 5] if nxt]
        return any(_OUTLOOK_NEXT.match(nxt) for nxt in following[:3])
    return False


def _quote_header(lines: list[str], i: int) -> int:
    """How many lines the quote header at `i` spans (0: none); clients wrap long ones.

    Line `i` is joined to the next ones only when they do not form a header on their own:
    an answer that starts like one ("On balance 8", "در کل ۸") may sit right above it.
    """
    if _is_header(lines[i]):
        return 1
    if i + 1 < len(lines) and lines[i + 1] and _HEADER_START.match(lines[i]):
        if _starts_header(lines, i + 1):
            return 0
        if _is_header(f"{lines[i]} {lines[i + 1]}"):
            return 2
        if i + 2 >= len(lines) or not lines[i + 2] or _starts_header(lines, i + 2):
            return 0
        if _is_header(f"{lines[i]} {lines[i + 1]} {lines[i + 2]}"):
            return 3
    return 0


def _starts_header(lines: list[str], i: int) -> bool:
    """Whether a whole header, one or two lines long, starts at `i` with a header's words."""
    if not _HEADER_START.match(lines[i]):
        return False
    if _is_header(lines[i]):
        return True
    return i + 1 < len(lines) and _is_header(f"{lines[i]} {lines[i + 1]}")


def _is_header(line: str) -> bool:
    if len(line) > 400 or not line.endswith(":"):
        return False
    if not (_WROTE_EN.search(line) or _WROTE_FA.search(line) or _WROTE_AR.search(line)):
        return False
    # A quote header names a time or an address; a sentence ending in "wrote:" rarely does.
    return "@" in line or any(char.isdigit() for char in line)
