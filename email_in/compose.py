"""Composing Seda's mail (invitations, next questions, closings) with the standard library.

A text part and an HTML part (`lang` and `dir="rtl"` for Persian and Arabic), Reply-To the
response's `survey+TOKEN` address, List-Unsubscribe to its `unsubscribe+TOKEN` address, and
for scale, yes/no and choice questions one-click answer links.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
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
    unsubscribe: str | None = None
    thread: str | None = None  # a fixed References id that keeps a response in one thread


def compose(letter: Letter, headers: Headers) -> EmailMessage:
    """The email for a batch of prompts: headers, a text part and an HTML part."""
    message = EmailMessage()
    message["From"] = headers.sender
    message["To"] = letter.to
    message["Subject"] = headers.subject
    message["Date"] = format_datetime(headers.date)
    message["Message-ID"] = headers.message_id
    if headers.reply_to:
        message["Reply-To"] = headers.reply_to
    if headers.thread:
        message["References"] = headers.thread
    if headers.unsubscribe:
        message["List-Unsubscribe"] = f"<mailto:{headers.unsubscribe}?subject=unsubscribe>"
    # RFC 3834: machines must not answer this (no vacation replies); Exchange's own switch.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["Content-Language"] = letter.language
    message.set_content(text_body(letter, asks=headers.reply_to is not None))
    message.add_alternative(html_body(letter, headers.subject, headers.reply_to is not None), "html")
    return message


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
    anchors = [
        f'<a href="{_e(link.url)}" style="{_BUTTON}">{_e(link.label)}</a>' for link in links
    ]
    if question_type in SCALES:
        cells = "".join(f'<td style="padding:0">{a}</td>' for a in anchors)
        table = f'<table role="presentation" dir="{direction(language)}"><tr>{cells}</tr></table>'
        return label + table
    return label + "".join(f"<p style='margin:4px 0'>{a}</p>" for a in anchors)


def _key(choice: Mapping[str, Any], language: str) -> str:
    key = choice.get("key")
    return f"{local_digits(str(key), language)}. " if key else "- "


def _e(text: str) -> str:
    return html.escape(text, quote=True)
