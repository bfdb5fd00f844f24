"""What a respondent hears when they send something that cannot be an answer (a sticker, a
photo without a caption, a location, a forwarded message, ...): a short notice in the survey's
language that asks for a typed answer or a button. Nothing is stored; the question stays open
and no attempt is used up. One notice per respondent per NOTICE_GAP, so an album or a burst of
stickers brings one notice, not one per message."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

from gateway.router import Gateway
from gateway.store import SessionRow
from social.common import Memory, button_codes, open_question

Kind = Literal["not_text", "forwarded"]
NOTICE_GAP = timedelta(seconds=60)
LEADS: Mapping[Kind, Mapping[str, str]] = {
    "not_text": {
        "en": "Sorry, we cannot read this kind of message as an answer.",
        "fa": "متأسفیم، این نوع پیام را نمی‌توانیم به‌عنوان پاسخ بخوانیم.",
        "ar": "عذراً، لا يمكننا قراءة هذا النوع من الرسائل كإجابة.",
    },
    "forwarded": {
        "en": "Sorry, a forwarded message cannot be your answer: we need your own words.",
        "fa": "متأسفیم، پیام بازارسال‌شده را نمی‌توانیم پاسخ شما بدانیم؛ پاسخ باید از خود شما باشد.",
        "ar": "عذراً، لا يمكن اعتبار رسالة مُعاد توجيهها إجابةً منك؛ نحتاج إلى كلماتك أنت.",
    },
}
ASKS: Mapping[bool, Mapping[str, str]] = {
    True: {  # the question has buttons (Telegram keyboard, WhatsApp reply buttons or lists)
        "en": "Please type your answer or tap your choice above.",
        "fa": "لطفاً پاسخ خود را بنویسید یا گزینهٔ خود را از بالا انتخاب کنید.",
        "ar": "يُرجى كتابة إجابتك أو اختيار إجابتك من الخيارات أعلاه.",
    },
    False: {
        "en": "Please type your answer as text.",
        "fa": "لطفاً پاسخ خود را به‌صورت متن بنویسید.",
        "ar": "يُرجى كتابة إجابتك نصاً.",
    },
}
REASONS: Mapping[Kind, str] = {
    "not_text": "not text: asked for a typed answer or a button",
    "forwarded": "a forwarded message is not the respondent's answer",
}


class Notices:
    """The notices of one channel, and when each address last got one (in memory)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._told: Memory[tuple[datetime, str]] = Memory(100_000)

    def text(self, row: SessionRow | None, kind: Kind) -> str | None:
        """The notice for the open question of `row`, in its language (English when the
        language has none); None without an open question."""
        current = open_question(self.gateway, row)
        if current is None:
            return None
        language = current[1].language
        lead, ask = LEADS[kind], ASKS[bool(button_codes(current))]
        return f"{lead.get(language, lead['en'])}\n{ask.get(language, ask['en'])}"

    def due(self, address: str, message_id: str) -> bool:
        """Whether `address` may get a notice for this message now: none was given in the last
        NOTICE_GAP, or it was for this very message (a redelivery, whose notice may not have
        reached the respondent). If so, it counts as given."""
        now = self.gateway.clock()
        last = self._told.get(address)
        if last is not None and now - last[0] < NOTICE_GAP and last[1] != message_id:
            return False
        self._told.remember(address, (now, message_id))
        return True
