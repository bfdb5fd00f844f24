"""WhatsApp Cloud API shapes: prompts as messages to send, webhook messages as replies.

Limits (Meta, "Interactive reply buttons messages" and "Interactive list messages",
developers.facebook.com/documentation/business-messaging/whatsapp/messages/): at most 3 reply
buttons with titles of up to 20 characters; a list holds up to 10 sections but at most
10 rows in all of them together, row titles up to 24 characters, descriptions up to 72, and
the button that opens it up to 20. So NPS's 11 answers cannot be one list (two sections do not
help, the 10 rows are for the whole message): they go out as two lists, 0-5 and 6-10, the
second a short follow-up; either can be answered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.model import InputMode
from social import render
from social.notices import Kind

MAX_BUTTONS = 3
BUTTON_TITLE = 20
LIST_ROWS = 10
ROW_TITLE = 24
ROW_DESCRIPTION = 72
LIST_BUTTON = 20
INTERACTIVE_BODY = 1024
TEXT_BODY = 4096
_SENDER = re.compile(r"^[0-9]{5,20}\Z")
_MEDIA = re.compile(r"^[A-Za-z0-9_-]{1,100}\Z")  # a media id goes into a Graph API path
CAPTIONED = ("image", "video", "document")  # media whose caption is read as the reply
# Messages that are no answer and need no notice: a reaction taken back (its emoji left out),
# the first open of a chat, system messages other than a changed number, and an edit or a
# deletion of an earlier message (numbers shared with the WhatsApp Business app): an answer is
# never changed once recorded (it may be forwarded already).
_SILENT = ("request_welcome", "system", "edit", "revoke")


@dataclass(frozen=True)
class Incoming:
    """One user message from a webhook: who, its wamid, and the reply it carries (if any)."""

    wamid: str
    sender: str  # the user's WhatsApp number, digits only
    reply: str | None  # None: not an answer (an image, a reaction, a location, ...)
    input_mode: InputMode = "text"
    audio: str | None = None  # the media id of a voice note or audio file, to recognise
    tapped: bool = False  # a reply button or list row of an interactive message Seda sent
    context: str | None = None  # the wamid of the message it replies to (a tap: the list's)
    notice: Kind | None = None  # no answer, and the respondent is told so (a sticker, ...)
    changed_to: str | None = None  # system user_changed_number: the user's new number
    errors: tuple[int, ...] = ()  # the codes of Meta's `errors` in the message (131051, ...)


def incoming(message: Mapping[str, Any]) -> Incoming | None:
    """Read one `value.messages[]` entry; None when it is malformed."""
    wamid, sender, kind = message.get("id"), message.get("from"), message.get("type")
    if not isinstance(wamid, str) or not 1 <= len(wamid) <= 256:
        return None
    if not isinstance(sender, str) or not _SENDER.match(sender):
        return None
    errors = _error_codes(message.get("errors"))
    if _get(message, "context", "forwarded") is True or _get(
        message, "context", "frequently_forwarded"
    ):
        # Someone else's words, whatever they say (context.forwarded; frequently_forwarded
        # past 5 forwards: Meta, "Text messages webhook reference").
        return Incoming(wamid, sender, None, notice="forwarded", errors=errors)
    reply: Any = None
    mode: InputMode = "text"
    tapped = False
    changed = _get(message, "system", "wa_id")
    if (
        kind == "system"
        and _get(message, "system", "type") == "user_changed_number"
        and isinstance(changed, str)
        and _SENDER.match(changed)
        and changed != sender
    ):
        return Incoming(wamid, sender, None, changed_to=changed, errors=errors)
    if kind in _SILENT or (kind == "reaction" and not _get(message, "reaction", "emoji")):
        return Incoming(wamid, sender, None, errors=errors)
    if kind == "text":
        reply = _get(message, "text", "body")
    elif kind in CAPTIONED:  # a screenshot with the complaint as its caption: the caption
        reply = _get(message, str(kind), "caption")
    elif kind == "interactive":  # a tapped reply button or list row: its id is the answer code
        chosen = _get(message, "interactive", "type")
        if chosen in ("button_reply", "list_reply"):
            reply, mode = _get(message, "interactive", str(chosen), "id"), "button"
            tapped = True
    elif kind == "button":  # a template's quick-reply button: its payload is the answer code
        reply = _get(message, "button", "payload") or _get(message, "button", "text")
        mode = "button"
    elif kind == "audio":  # a voice note (audio.voice) or an audio file: heard, not read
        media = _get(message, "audio", "id")
        if isinstance(media, str) and _MEDIA.match(media):
            return Incoming(wamid, sender, None, "speech", audio=media)
    context = _get(message, "context", "id")
    context = context if isinstance(context, str) else None
    if not isinstance(reply, str) or not reply.strip():
        # Nothing to read (an image without a caption, a sticker, a location, a contact card,
        # a reaction, an `unsupported` message, ...): the respondent is asked for text.
        return Incoming(wamid, sender, None, context=context, notice="not_text", errors=errors)
    return Incoming(wamid, sender, reply, mode, tapped=tapped, context=context, errors=errors)


def outgoing(prompt: Mapping[str, Any], to: str) -> list[dict[str, Any]]:
    """The Cloud API messages for one prompt: reply buttons, lists, or plain text."""
    text = str(prompt["text"])
    options = render.options(prompt)
    if not options:
        return [_message(to, "text", {"body": render.shorten(text, TEXT_BODY)})]
    body = render.shorten(text, INTERACTIVE_BODY)
    if len(options) <= MAX_BUTTONS:
        buttons = [
            {"type": "reply", "reply": {"id": code, "title": render.shorten(label, BUTTON_TITLE)}}
            for code, label in options
        ]
        return [_interactive(to, "button", body, {"buttons": buttons})]
    return _lists(to, prompt, body, options)


def template(to: str, name: str, language: str) -> dict[str, Any]:
    """An approved template message (the only kind allowed outside the 24-hour window)."""
    return _message(to, "template", {"name": name, "language": {"code": language}})


def _lists(
    to: str, prompt: Mapping[str, Any], body: str, options: list[render.Option]
) -> list[dict[str, Any]]:
    """As few list messages as the 10-row limit allows, split evenly (11 -> 6 + 5)."""
    language = str(prompt.get("language", "en"))
    count = math.ceil(len(options) / LIST_ROWS)
    size = math.ceil(len(options) / count)
    chunks = [options[at : at + size] for at in range(0, len(options), size)]
    messages = []
    for index, chunk in enumerate(chunks):
        if render.is_scale(prompt):  # ۰–۵: the numbers of the rows, in the language's digits
            label = "–".join(render.localized(chunk[e][0], language) for e in (0, -1))
        else:
            label = render.word(render.CHOOSE, language)
            label += f" {index + 1}/{count}" if count > 1 else ""
        rows = [_row(code, title) for code, title in chunk]
        action = {"button": render.shorten(label, LIST_BUTTON), "sections": [{"rows": rows}]}
        messages.append(_interactive(to, "list", body if index == 0 else label, action))
    return messages


def _row(code: str, label: str) -> dict[str, str]:
    row = {"id": code, "title": render.shorten(label, ROW_TITLE)}
    if len(label) > ROW_TITLE:
        row["description"] = render.shorten(label, ROW_DESCRIPTION)
    return row


def _interactive(to: str, kind: str, body: str, action: dict[str, Any]) -> dict[str, Any]:
    return _message(to, "interactive", {"type": kind, "body": {"text": body}, "action": action})


def _message(to: str, kind: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: content,
    }


def _error_codes(errors: object) -> tuple[int, ...]:
    """The codes of a message's `errors` (an `unsupported` message has 131051 or 131060)."""
    if not isinstance(errors, list):
        return ()
    codes = (e.get("code") for e in errors if isinstance(e, Mapping))
    return tuple(c for c in codes if isinstance(c, int) and not isinstance(c, bool))


def _get(data: Mapping[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data
