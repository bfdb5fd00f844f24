"""A reply's prompts in the webhook answer: one sendMessage that Telegram runs for Seda.

The Bot API runs one method given in the answer to a webhook POST ("Making requests when
getting updates", core.telegram.org/bots/api) and never says whether it worked. So a step's
prompts ride in the answer only when one sendMessage renders them faithfully: their texts joined
(a blank line between) within Telegram's 4096 characters, and a keyboard on the last one only.
Otherwise all of them go through the outbox, as with `reply: api`, never some of each: a message
sent by the outbox could overtake the one Telegram sends from the answer.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.logs import fields
from gateway.model import Event
from gateway.results import Result, dedupe_key
from gateway.router import Gateway
from gateway.store import DuplicateMessage, StepWrite
from social.common import with_scales
from social.telegram_send import keyboard

log = logging.getLogger("seda.telegram")

CHANNEL = "telegram"
MAX_TEXT = 4096  # sendMessage text, in UTF-16 code units (Bot API, sendMessage)
QUEUED = "outbox"  # suffix of the provider column that marks prompts queued instead
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class Pending:
    """A reply the gateway stored with `answered_inline`: its prompts are still to go out."""

    bot: str
    address: str
    message_id: str
    result: Result


async def answer(gateway: Gateway, pending: Pending) -> str | None:
    """The webhook answer that sends a reply's prompts; None when there is nothing to send, or
    after queueing them in the outbox because they do not fit one message."""
    found = await prompts(gateway, pending)
    if not found:
        return None
    body = method(_chat_id(pending.address), found)
    if body is None:
        queued = await queue(gateway, pending)
        log.info(
            "telegram prompts do not fit one message: sent through the outbox",
            extra=fields(bot=pending.bot, prompts=len(found), queued=queued),
        )
    return body


def method(chat_id: int, prompts: Sequence[Mapping[str, Any]]) -> str | None:
    """The webhook answer (JSON) that sends these prompts as one message, or None if none can."""
    texts = [str(p["text"]) for p in prompts]
    if not texts:
        return None
    markups = [keyboard(p) for p in prompts]
    if any(markup is not None for markup in markups[:-1]):
        return None  # a keyboard that is not the last message's would move or vanish
    rest = _text_and_markup("\n\n".join(texts), markups[-1])
    return None if rest is None else f'{{"method":"sendMessage","chat_id":{int(chat_id)}{rest}'


@functools.lru_cache(maxsize=256)
def _text_and_markup(text: str, markup: str | None) -> str | None:
    """The end of the answer, after the chat id: the same for every respondent of a question,
    so built once; None when the text is too long for one message."""
    # A character is one or two UTF-16 code units: only a long text needs counting.
    if len(text) * 2 > MAX_TEXT and len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
        return None
    rest = f',"text":{_encode(text)}'
    if markup is not None:  # already JSON
        rest += f',"reply_markup":{markup}'
    return rest + "}"


async def prompts(gateway: Gateway, pending: Pending) -> list[dict[str, Any]]:
    """The step's prompts with text, as the outbox would hand them to deliver()."""
    data = {
        "prompts": [o.to_json() for o in pending.result.outbound],
        "response_id": pending.result.response_id,
    }
    return await with_scales(gateway, data)


async def queue(gateway: Gateway, pending: Pending, channel: str = CHANNEL) -> bool:
    """Store the prompts as an `outbound.<channel>` event, as `reply: api` would have; False
    when an earlier delivery of the same update already did (a redelivery queues nothing)."""
    result = pending.result
    outbound = result.outbound
    data = {
        "channel": channel,
        "provider": pending.bot,
        "line": pending.bot,  # answered by the bot the reply came through, as inline would be
        "in_reply_to": pending.message_id,
        "address": pending.address,
        "response_id": result.response_id,
        "language": outbound[0].language,
        "prompts": [o.to_json() for o in outbound],
    }
    event = Event(
        gateway.new_id(), f"outbound.{channel}", result.response_id, gateway.clock(), data
    )
    order_key = result.response_id or gateway.respondent(pending.address).id
    # The marker row shares the event's transaction: a second try finds it and adds nothing.
    key = dedupe_key(pending.address, pending.message_id)
    marker = (channel, f"{pending.bot}/{QUEUED}", key, {"prompts": len(outbound)})
    try:
        await gateway.store.commit(
            StepWrite(events=((order_key, event.to_json()),), inbound=marker)
        )
    except DuplicateMessage:
        return False
    return True


def _chat_id(address: str) -> int:
    """The chat of a `telegram:<chat id>` address (the channel made it from an update)."""
    return int(address.partition(":")[2])
