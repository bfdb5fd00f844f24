"""Composing Seda's mail (invitations, next questions, closings).

A text part and an HTML part (`lang` and `dir="rtl"` for Persian and Arabic), Reply-To the
response's `survey+TOKEN` address, List-Unsubscribe to the one-click HTTPS URL (RFC 8058) and
to its `unsubscribe+TOKEN` address, and for scale, yes/no and choice questions one-click
answer links.

The MIME skeleton is written here; the encodings come from the standard library's email
package (RFC 2047 headers, addresses, dates) and base64. Building an EmailMessage took about
4 ms per email (its header objects), more than the rest of an answer's work together; this
takes about 0.1 ms, and tests parse every email with the standard library's parser.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Any

from email_in import texts
from email_in.texts import direction, local_digits, say

_FONT = "font-family:Tahoma,'Segoe UI',Arial,sans-serif;font-size:16px;line-height:1.6"
_BUTTON = (
    "display:inline-block;min-width:2em;padding:8px 12px;margin:2px;border:1px solid #3b6ea5;"
    "border-radius:6px;color:#3b6ea5;text-decoration:none;text-align:center"
)
SCALES = frozenset({"nps", "csat", "ces", "rating"})


@dataclass(frozen=True)
class Link:
    """A one-click answer: the code it records, what it shows, and its URL."""

    code: str
    label: str
    url: str


@dataclass(frozen=True)
class Letter:
    """What one email says: its prompts, in one language, with the links of its questions."""

    to: str  # the bare address
    language: str
    prompts: Sequence[Mapping[str, Any]]
    links: Mapping[str, Sequence[Link]]  # by question id


@dataclass(frozen=True)
class Headers:
    """The addressing of one email."""

    sender: str
    subject: str
    message_id: str
    date: datetime
    reply_to: str | None = None
    unsubscribe: str | None = None  # the unsubscribe+TOKEN address
    unsubscribe_url: str | None = None  # the one-click URL (RFC 8058)
    thread: str | None = None  # a fixed References id that keeps a response in one thread
    in_reply_to: str | None = None  # the respondent's email these prompts answer


def compose(letter: Letter, headers: Headers) -> bytes:
    """The email for a batch of prompts, as it goes on the wire: a text and an HTML part."""
    values = (
        *(headers.sender, headers.subject, headers.message_id, letter.to, letter.language),
        *(headers.reply_to or "", headers.thread or "", headers.unsubscribe or ""),
        headers.in_reply_to or "",
        headers.unsubscribe_url or "",
    )
    if any("\r" in value or "\n" in value for value in values):
        raise ValueError("a header value holds a line break")
    asks = headers.reply_to is not None  # without a reply address there is nothing to answer
    boundary = "=_seda_" + hashlib.sha256(headers.message_id.encode()).hexdigest()[:32]
    lines = [
        f"From: {_address(headers.sender)}",
        f"To: {letter.to}",
        f"Subject: {_text_header(headers.subject)}",
        f"Date: {format_datetime(headers.date)}",
        f"Message-ID: {headers.message_id}",
    ]
    if headers.reply_to:
        lines.append(f"Reply-To: {headers.reply_to}")
    if headers.in_reply_to:
        lines.append(f"In-Reply-To: {headers.in_reply_to}")
    references = " ".join(r for r in (headers.thread, headers.in_reply_to) if r)
    if references:
        lines.append(f"References: {references}")
    lines += _unsubscribe(headers)
    lines += [
        # RFC 3834: machines must not answer this (no vacation replies); Exchange's own switch.
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: All",
        f"Content-Language: {letter.language}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        *_part("plain", text_body(letter, asks)),
        f"--{boundary}",
        *_part("html", html_body(letter, headers.subject, asks)),
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def _unsubscribe(headers: Headers) -> list[str]:
    """List-Unsubscribe (RFC 2369), and List-Unsubscribe-Post (RFC 8058) for an HTTPS URL."""
    targets = []
    if headers.unsubscribe_url:
        targets.append(f"<{headers.unsubscribe_url}>")
    if headers.unsubscribe:
        targets.append(f"<mailto:{headers.unsubscribe}?subject=unsubscribe>")
    if not targets:
        return []
    lines = ["List-Unsubscribe: " + ",\r\n ".join(targets)]  # folded: one target a line
    if headers.unsubscribe_url and headers.unsubscribe_url.startswith("https://"):
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    return lines


def asks_question(letter: Letter) -> bool:
    """Whether the letter asks something (a prompt or a re-prompt), not only says thanks."""
    return any(p.get("kind") in ("prompt", "invalid") for p in letter.prompts)


def text_body(letter: Letter, asks: bool = True) -> str:
    """The text/plain part."""
    language = letter.language
    blocks: list[str] = []
    for prompt in letter.prompts:
        lines = [str(prompt.get("text", ""))]
        choices = prompt.get("choices") or []
        if prompt.get("question_type") == "choice":
            lines += [f"{_key(c, language)}{c['label']}" for c in choices]
        links = letter.links.get(str(prompt.get("question_id")), ())
        if links and prompt.get("kind") in ("prompt", "invalid"):
            lines += ["", say(texts.ONE_CLICK, language)]
            lines += [f"{link.label}: {link.url}" for link in links]
        blocks.append("\n".join(line for line in lines if line is not None))
    if asks and asks_question(letter):
        blocks.append(f"{say(texts.REPLY_HINT, language)}\n{say(texts.STOP_HINT, language)}")
    return "\n\n".join(blocks) + "\n"


def html_body(letter: Letter, title: str, asks: bool = True) -> str:
    """The text/html part, right-to-left for Persian and Arabic."""
    language = letter.language
    dir_ = direction(language)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{_e(language)}" dir="{dir_}">',
        f'<head><meta charset="utf-8"><title>{_e(title)}</title></head>',
        f'<body dir="{dir_}" style="{_FONT};text-align:{"right" if dir_ == "rtl" else "left"}">',
    ]
    for prompt in letter.prompts:
        parts.append(f"<p>{_e(str(prompt.get('text', ''))).replace(chr(10), '<br>')}</p>")
        links = letter.links.get(str(prompt.get("question_id")), ())
        asking = prompt.get("kind") in ("prompt", "invalid")
        if links and asking:
            parts.append(_buttons(links, str(prompt.get("question_type")), language))
        elif prompt.get("question_type") == "choice" and prompt.get("choices"):
            items = "".join(f"<li>{_e(c['label'])}</li>" for c in prompt["choices"])
            parts.append(f"<ol>{items}</ol>")
    if asks and asks_question(letter):
        hint = f"{_e(say(texts.REPLY_HINT, language))}<br>{_e(say(texts.STOP_HINT, language))}"
        parts.append(f'<p style="color:#666;font-size:13px">{hint}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _buttons(links: Sequence[Link], question_type: str, language: str) -> str:
    label = f"<p>{_e(say(texts.ONE_CLICK, language))}</p>"
    anchors = [f'<a href="{_e(link.url)}" style="{_BUTTON}">{_e(link.label)}</a>' for link in links]
    if question_type in SCALES:
        cells = "".join(f'<td style="padding:0">{a}</td>' for a in anchors)
        table = f'<table role="presentation" dir="{direction(language)}"><tr>{cells}</tr></table>'
        return label + table
    return label + "".join(f"<p style='margin:4px 0'>{a}</p>" for a in anchors)


def _part(subtype: str, text: str) -> list[str]:
    # Base64 lines never hold the boundary's "_", and survive any relay's line handling.
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        *base64_lines(text.encode("utf-8")),
    ]


def base64_lines(data: bytes) -> list[str]:
    """Base64 in lines of 76 characters, as base64.encodebytes writes them (which encodes
    57 bytes at a time, several times slower)."""
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i : i + 76] for i in range(0, len(encoded), 76)] or [""]


def _text_header(value: str) -> str:
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n")


@lru_cache(maxsize=16)  # the configured sender: the same for every email
def _address(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8")


def _key(choice: Mapping[str, Any], language: str) -> str:
    key = choice.get("key")
    return f"{local_digits(str(key), language)}. " if key else "- "


def _e(text: str) -> str:
    return html.escape(text, quote=True)
