"""Telegram: bots on python-telegram-bot 22 inside Seda's event loop (webhook or polling).

Updates are processed in the request and acknowledged (200) only after the gateway committed,
so Telegram redelivers whatever a crash interrupted; update_id de-duplicates the redelivery.
A reply's prompts ride in the webhook answer as one sendMessage (`reply: inline`, the default
for webhooks; social/telegram_inline.py) or go through the outbox (deliver, `reply: api`, and
always for invitations and polling); only the refusal of a voice note, which stores nothing, is
sent at once from the request (social/voice.py).
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import logging
import re
from collections.abc import Collection, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web
from telegram import ChatMember, ChatMemberUpdated, Message, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError

from gateway.backends import DeliveryError
from gateway.config import ConfigError, Problems
from gateway.logs import fields
from gateway.model import Inbound, InputMode
from gateway.results import NO_OPEN_SURVEY, Rejected, Result, dedupe_key
from gateway.router import Gateway
from gateway.secret import same_secret
from social import telegram_inline
from social.common import (
    Memory,
    Progress,
    answer,
    button_codes,
    entries,
    open_question,
    refuse,
    with_scales,
)
from social.notices import REASONS, Kind, Notices
from social.rate_limits import RecipientHolds
from social.telegram_bots import TelegramBot, build_bot
from social.telegram_inline import Pending
from social.telegram_polling import ALLOWED_UPDATES, RETRY_CAP, Polling, not_understood
from social.telegram_send import MAX_CALLBACK_DATA, delivery_error, keyboard
from social.telegram_updates import (
    PlainText,
    Unreadable,
    app_language,
    asks_current,
    forwarded,
    parse_update,
    plain_text,
    seconds,
)
from social.voice import Refused, VoiceNotes

log = logging.getLogger("seda.telegram")

CHANNEL = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# A deep-link start parameter: up to 64 characters A-Z, a-z, 0-9, _ and - (Bot API, deep links).
_START = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# my_chat_member: in a private chat, Telegram sends it only when the user blocks the bot (or
# deletes the chat, which blocks it) and when they unblock it (Bot API, Update).
ANSWERED_MEMORY = 10_000  # button presses remembered as answered (a redelivery is not again)
ALBUMS = 10_000  # media groups remembered: the rest of an album brings no second reply
# What a respondent sends that is no answer but deserves a notice (a service message, such as a
# pinned message or a shared-chat event, gets none); text, captions and voice notes are read.
CONTENT = (
    "photo", "document", "video", "animation", "audio", "voice", "video_note", "sticker",
    "location", "venue", "contact", "poll", "dice", "story", "paid_media", "game", "checklist",
)  # fmt: skip


@dataclass(frozen=True)
class Handled:
    """What one update came to: the status and reason, and a reply's prompts still to send
    (`pending`) when they may ride in the webhook answer."""

    status: str
    reason: str = ""
    pending: Pending | None = None
    body: str | None = None  # a webhook answer ready to go: a notice's sendMessage


class TelegramChannel:
    """Telegram bots: POST /telegram/{bot} webhooks (or polling), prompts as inline keyboards."""

    name = CHANNEL
    checks_whole_block = True  # check_settings looks up every key, past every mistake

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]):
        self.gateway = gateway
        # PTB logs each call's parameters (chat ids, message text) at DEBUG: never below INFO.
        ptb = logging.getLogger("telegram")
        ptb.setLevel(max(ptb.getEffectiveLevel(), logging.INFO))
        self.bots = {name: build_bot(name, e) for name, e in entries(spec, "bots", CHANNEL).items()}
        self._tasks: set[asyncio.Task[None]] = set()
        self._polling = Polling(self.process)
        self._progress = Progress()
        self._holds = RecipientHolds()  # chats waiting out a 429
        self._answered: dict[str, None] = {}  # callback query ids answered, oldest first
        self._albums: Memory[bool] = Memory(ALBUMS)  # media_group_id of albums seen
        self.voice = VoiceNotes(spec, f"channels.{CHANNEL}")
        self.notices = Notices(gateway)

    @staticmethod
    def check_settings(spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """`seda validate` and `seda run`: the block as the channel reads it at start (each
        bot's application is built, not started: nothing is asked of the Bot API); every
        mistake of every bot and of the voice block, one line each."""
        problems = Problems()
        for name, entry in entries(spec, "bots", CHANNEL, problems).items():
            problems.value(partial(build_bot, name, entry), None)
        problems.value(partial(VoiceNotes, spec, f"channels.{CHANNEL}"), None)
        return problems.lines

    def invitation_address(self, address: str, line: str | None) -> str:
        """telegram:<chat id>, as the bot's updates write it; ValueError for anything else or
        an unknown bot."""
        if line and line not in self.bots:
            raise ValueError(f"no bot {line!r} (bots: {', '.join(self.bots)})")
        try:
            return f"{CHANNEL}:{_chat_id(address)}"
        except DeliveryError:
            raise ValueError("a Telegram invitation goes to telegram:<chat id>") from None

    def health(self) -> dict[str, Any]:
        """For /healthz: degraded while a bot is not up (the Bot API not reached yet, or its
        token refused) or its getUpdates fail."""
        bots: dict[str, dict[str, Any]] = {}
        for name, bot in self.bots.items():
            found: dict[str, Any] = {"mode": bot.mode, "ready": bot.ready}
            since = self._polling.failing.get(name)
            if since is not None:
                at = dtm.datetime.fromtimestamp(since, dtm.UTC).isoformat()
                found.update(polling="failing", since=at)
            bots[name] = found
        troubled = any(not b["ready"] or "polling" in b for b in bots.values())
        return {"status": "degraded" if troubled else "ok", "bots": bots}

    def routes(self) -> list[web.RouteDef]:
        """The webhook route every bot shares."""
        return [web.post("/telegram/{bot}", self.webhook)]

    async def start(self) -> None:
        """Initialize and start every bot; one the Bot API cannot reach yet keeps trying."""
        for bot in self.bots.values():
            if not await self._bring_up(bot):
                self._spawn(self._keep_trying(bot))

    async def stop(self) -> None:
        """Stop polling and the applications (their HTTP clients close in close())."""
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bot in self.bots.values():
            if bot.app.running:
                await bot.app.stop()

    async def close(self) -> None:
        """Shut the applications down, after the forwarder's last delivery."""
        for bot in self.bots.values():
            bot.ready = False
            await bot.app.shutdown()
            await bot.app.bot.shutdown()
            for request in bot.requests:
                await request.shutdown()

    async def webhook(self, request: web.Request) -> web.Response:
        """POST /telegram/{bot}: one update, acknowledged once the gateway has committed it."""
        bot = self.bots.get(request.match_info["bot"])
        if bot is None or bot.mode != "webhook":
            return refuse(404, "no such bot takes webhooks here")
        if not same_secret(request.headers.get(SECRET_HEADER), bot.secret):
            return refuse(403, f"missing or wrong {SECRET_HEADER}")
        raw = await request.read()
        inline = bot.reply == "inline"
        try:
            data = json.loads(raw)
            plain = plain_text(data)
            update = None if plain is not None else parse_update(data, bot)
        except Unreadable as exc:
            # With the secret, so from Telegram, but not readable here (a Bot API newer than
            # PTB?): refused, so that getWebhookInfo shows it too, and logged by its id.
            not_understood(bot, exc)
            return refuse(400, "the update could not be read")
        except (ValueError, RecursionError, OverflowError):  # PTB: a date past year 9999
            return refuse(400, "the body is not a Telegram update in JSON")
        if update is not None:
            handled = await self.process(bot, update, inline=inline)
        else:
            assert plain is not None
            handled = await self._plain(bot, plain, inline)
        if handled.body is not None:
            return web.Response(text=handled.body, content_type="application/json")
        if handled.pending is not None:
            body = await telegram_inline.answer(self.gateway, handled.pending)
            if body is not None:
                return web.Response(text=body, content_type="application/json")
        return answer(handled.status, handled.reason)

    async def process(self, bot: TelegramBot, update: Update, inline: bool = False) -> Handled:
        """Turn one update into a reply, a survey start or nothing. `inline`: the caller can
        answer with a reply's prompts (a webhook), so the gateway does not queue them."""
        edited = (update.edited_message, update.edited_channel_post, update.edited_business_message)
        if any(e is not None for e in edited):
            return Handled("ignored", "edited messages are not answers")
        if update.callback_query is not None:
            return await self._button(bot, update, inline)
        if update.message is not None:
            return await self._message(bot, update, update.message, inline)
        if update.my_chat_member is not None:
            return await self._membership(bot, update.my_chat_member)
        return Handled("ignored", "this kind of update carries no answer")

    async def _membership(self, bot: TelegramBot, change: ChatMemberUpdated) -> Handled:
        """The respondent blocked the bot: its open response ends now (response.abandoned,
        reason "blocked", the answers so far kept) instead of waiting for its expiry, and
        nothing more is sent to a chat that refuses it. An unblock starts nothing."""
        if change.chat.type != "private":
            return Handled("ignored", "surveys run in private chats only")
        if change.new_chat_member.status != ChatMember.BANNED:
            return Handled("ignored", "the bot may write to this chat")
        address = f"telegram:{change.chat.id}"
        row = await self.gateway.store.open_session(CHANNEL, address)
        if row is None:
            return Handled("ignored", "blocked, with no open survey")
        if row.data.get("line") not in (None, bot.name):
            return Handled("ignored", "blocked, but the open survey runs on another bot")
        result = await self.gateway.end(CHANNEL, address, "blocked")
        log.info("telegram bot blocked by a respondent", extra=fields(bot=bot.name))
        return Handled(result.outcome, result.reason)

    async def deliver(self, event: dict[str, Any]) -> None:
        """Send each prompt with sendMessage, with its inline keyboard when it has answers."""
        data = event["data"]
        bot = self._bot_for(data)
        if bot is None:
            raise DeliveryError("no telegram bot is configured", retryable=False)
        if not bot.ready:
            raise DeliveryError(f"telegram bot {bot.name} is not ready yet", retryable=True)
        chat_id = _chat_id(str(data.get("address", "")))
        self._holds.check(bot.name, str(chat_id))
        event_id = str(event.get("id", ""))
        prompts = await with_scales(self.gateway, data)
        for index, prompt in enumerate(prompts):
            if index < self._progress.sent(event_id):
                continue  # sent by an earlier attempt of this event
            markup = keyboard(prompt)
            try:
                # The keyboard goes pre-encoded (api_kwargs): PTB would rebuild it per message.
                await bot.app.bot.send_message(
                    chat_id, prompt["text"], api_kwargs={"reply_markup": markup} if markup else None
                )
            except TelegramError as exc:
                if isinstance(exc, Forbidden):
                    await self._refused_by_chat(data)
                error = delivery_error(exc, bot.token)
                raise self._holds.refused(bot.name, str(chat_id), error, spreads=True) from None
            self._progress.advance(event_id)
        self._progress.finish(event_id)

    async def _refused_by_chat(self, data: Mapping[str, Any]) -> None:
        """Telegram will not deliver to this chat (403: the respondent blocked the bot, or never
        started it): the response the message belongs to ends, as a block seen in
        my_chat_member ends it; the message itself goes to the dead letter."""
        address = str(data.get("address", ""))
        row = await self.gateway.store.open_session(CHANNEL, address)
        if row is not None and row.response_id == data.get("response_id"):
            await self.gateway.end(CHANNEL, address, "blocked")

    async def _message(
        self, bot: TelegramBot, update: Update, message: Message, inline: bool
    ) -> Handled:
        if message.chat.type != "private":
            return Handled("ignored", "surveys run in private chats only")
        address = f"telegram:{message.chat.id}"
        message_id = f"{bot.name}:{update.update_id}"
        if forwarded(message):  # someone else's words, whatever they say
            return await self._notice(bot, message.chat.id, message_id, "forwarded", inline)
        # A photo, document or video with the answer as its caption: the caption is the reply
        # (the attachment is not fetched); on a voice note too, which is then not heard.
        reply = message.text if message.text is not None else message.caption
        album = message.media_group_id
        if album is not None:
            # One album comes as one message per item, the caption usually on the first: the
            # caption is read, the other items bring nothing (no notice after the answer).
            seen = self._albums.get(album) is not None
            self._albums.remember(album, True)
            if reply is None and seen:
                return Handled("ignored", "the rest of an album already answered")
        if reply is None:
            if message.voice is not None and self.voice.enabled:
                return await self._voice(bot, update, message, inline)
            if any(getattr(message, kind, None) for kind in CONTENT):
                return await self._notice(bot, message.chat.id, message_id, "not_text", inline)
            return Handled("ignored", "a service message carries no answer")
        language = None
        if reply.startswith("/"):
            command, _, argument = reply[1:].partition(" ")
            command = command.split("@", 1)[0].lower()  # /start@SomeBot in a command menu
            if command == "start":
                return await self._start(bot, message, address, message_id, argument.strip())
            if command != "stop":
                return Handled("ignored", "unknown command")
            reply, language = "STOP", app_language(message)  # the opt-out word, in any channel
        inbound = self._inbound(bot, address, reply, "text", message_id, inline, language)
        return _handled(bot, inbound, await self.gateway.receive(inbound))

    async def _plain(self, bot: TelegramBot, plain: PlainText, inline: bool) -> Handled:
        """A typed answer that is no command (most updates), as _message() would handle it."""
        if plain.chat_type != "private":
            return Handled("ignored", "surveys run in private chats only")
        address = f"telegram:{plain.chat_id}"
        message_id = f"{bot.name}:{plain.update_id}"
        inbound = self._inbound(bot, address, plain.text, "text", message_id, inline)
        return _handled(bot, inbound, await self.gateway.receive(inbound))

    async def _start(
        self, bot: TelegramBot, message: Message, address: str, message_id: str, argument: str
    ) -> Handled:
        """`/start <survey>` or `/start <survey>__<language>` (a deep link) starts that survey.
        Its first prompts are an invitation's: they go through the outbox (quiet hours apply)."""
        if not argument:
            # Telegram's START button (or RESTART, after the user stopped the bot) sends a bare
            # /start: from someone who opted out, it is the START the opt-out notice asks for.
            respondent = self.gateway.respondent(address)
            if await self.gateway.store.is_suppressed(respondent.id):
                inbound = self._inbound(
                    bot, address, "START", "text", message_id, False, app_language(message)
                )
                return _handled(bot, inbound, await self.gateway.receive(inbound))
            return Handled("ignored", "no survey named after /start")
        if not _START.match(argument):
            return Handled("ignored", "malformed start parameter")
        survey_id, language = argument, None
        if "__" in argument:
            survey_id, _, language = argument.rpartition("__")
        survey = self.gateway.surveys.get(survey_id)
        if language is None and survey is not None and app_language(message) in survey.languages:
            language = app_language(message)  # the respondent's Telegram app language
        inbound = Inbound(
            "start",
            CHANNEL,
            bot.name,
            address,
            self.gateway.clock(),
            survey_id=survey_id,
            language=language,
            context={"source": "telegram_deep_link"},
            line=bot.name,
        )
        try:
            await self.gateway.invite(inbound, invitation_id=message_id)
        except Rejected as exc:
            return Handled("ignored", str(exc))
        return Handled("accepted", "survey started")

    async def _button(self, bot: TelegramBot, update: Update, inline: bool) -> Handled:
        query = update.callback_query
        assert query is not None
        try:
            if query.message is not None and query.message.chat.type != "private":
                return Handled("ignored", "surveys run in private chats only")
            chat_id = query.message.chat.id if query.message is not None else query.from_user.id
            address = f"telegram:{chat_id}"
            code = query.data or ""
            if not 1 <= len(code.encode("utf-8")) <= MAX_CALLBACK_DATA:
                return Handled("ignored", "malformed button data")
            message_id = f"{bot.name}:{update.update_id}"
            store = self.gateway.store
            key = dedupe_key(address, message_id)
            seen, row = await store.conversation(CHANNEL, address, bot.name, key)
            inbound = self._inbound(bot, address, code, "button", message_id, inline)
            if seen is not None:  # a redelivery: the same answer as the first time
                return _handled(bot, inbound, Result.from_json(seen))
            current = open_question(self.gateway, row)
            codes = button_codes(current)
            if code not in codes:
                return Handled("ignored", "the button does not answer the current question")
            if current is not None and not asks_current(query.message, current, codes):
                # An earlier question's button whose data the current one also takes (a
                # double tap on 1-5 stars when 1-7 is asked next): not an answer to this one.
                return Handled("ignored", "the button is on an earlier question's message")
            return _handled(bot, inbound, await self.gateway.receive(inbound))
        finally:
            if query.id not in self._answered:  # a redelivered press was answered already
                await self._answer_query(bot, query.id)

    async def _voice(
        self, bot: TelegramBot, update: Update, message: Message, inline: bool
    ) -> Handled:
        """A voice note: recognised against the current question's words, then a reply."""
        voice = message.voice
        assert voice is not None
        if not self.voice.enabled:
            return Handled("ignored", "voice notes are turned off")
        address = f"telegram:{message.chat.id}"
        message_id = f"{bot.name}:{update.update_id}"
        key = dedupe_key(address, message_id)
        seen, row = await self.gateway.store.conversation(CHANNEL, address, bot.name, key)
        if seen is not None:  # a redelivery: the same outcome, without hearing it again
            again = self._inbound(bot, address, "", "speech", message_id, inline)
            return _handled(bot, again, Result.from_json(seen))
        current = open_question(self.gateway, row)
        if current is None:
            return Handled("ignored", "no open survey for this respondent")
        question, session = current
        try:
            self.voice.refuse_early(seconds(voice.duration), voice.file_size)
            audio = await self._download(bot, voice.file_id)
            if audio is None:
                return Handled("ignored", "the voice note could not be fetched")
            heard = await self.voice.hear(audio, question, session.language)
        except Refused as exc:
            await self._tell(
                bot, message.chat.id, self.voice.refusal(exc.refusal, session.language)
            )
            return Handled("ignored", str(exc))
        inbound = Inbound(
            "reply",
            CHANNEL,
            bot.name,
            address,
            self.gateway.clock(),
            text=heard.text if heard else "",  # nothing heard: an empty reply, asked again
            input_mode="speech",
            transcript=heard.text if heard else None,
            confidence=heard.confidence if heard else None,
            message_id=message_id,
            line=bot.name,
            answered_inline=inline,
        )
        return _handled(bot, inbound, await self.gateway.receive(inbound))

    async def _notice(
        self, bot: TelegramBot, chat_id: int, message_id: str, kind: Kind, inline: bool
    ) -> Handled:
        """Something that cannot be an answer: the respondent with an open survey is asked for
        a typed answer or a button (in the webhook answer when it can ride there), and
        nothing is stored."""
        address = f"telegram:{chat_id}"
        row = await self.gateway.store.open_session(CHANNEL, address)
        if row is not None and row.data.get("line") not in (None, bot.name):
            row = None  # the open survey runs on another bot: this chat asked nothing
        text = self.notices.text(row, kind)
        if text is None:
            return Handled("ignored", NO_OPEN_SURVEY)
        if not self.notices.due(address, message_id):  # one notice for a burst
            return Handled("ignored", REASONS[kind])
        if inline:
            return Handled(
                "ignored", REASONS[kind], body=telegram_inline.method(chat_id, [{"text": text}])
            )
        await self._tell(bot, chat_id, text)
        return Handled("ignored", REASONS[kind])

    async def _download(self, bot: TelegramBot, file_id: str) -> bytes | None:
        """getFile, then the file from the bot's file URL (capped); None when it cannot be had."""
        try:
            found = await bot.app.bot.get_file(file_id)
        except BadRequest as exc:  # e.g. "file is too big" (over 20 MB): asking again won't help
            log.info("getFile refused", extra=fields(bot=bot.name, error=type(exc).__name__))
            return None
        self.voice.refuse_early(None, found.file_size)
        url = found.file_path or ""
        if not url.startswith(("https://", "http://")):  # a local Bot API server's own path
            log.warning("voice note has no file URL to fetch", extra=fields(bot=bot.name))
            return None
        audio = await bot.requests[0].download(url, self.voice.limits.max_bytes)
        if audio is None:
            raise Refused("too_long", "the voice note is bigger than max_bytes")
        return audio

    async def _tell(self, bot: TelegramBot, chat_id: int, text: str) -> None:
        """A notice that is not part of the survey (nothing stored): sent now, best effort."""
        try:
            await bot.app.bot.send_message(chat_id, text)
        except TelegramError as exc:
            log.warning(
                "could not send a notice", extra=fields(bot=bot.name, error=type(exc).__name__)
            )

    async def _answer_query(self, bot: TelegramBot, query_id: str) -> None:
        """answerCallbackQuery, or the button keeps spinning in the respondent's app."""
        try:
            await bot.app.bot.answer_callback_query(query_id)
        except TelegramError as exc:
            log.warning(
                "could not answer a button press",
                extra=fields(bot=bot.name, error=type(exc).__name__),
            )
            return
        self._answered[query_id] = None
        if len(self._answered) > ANSWERED_MEMORY:  # forget the oldest: worst case, asked twice
            del self._answered[next(iter(self._answered))]

    def _inbound(
        self,
        bot: TelegramBot,
        address: str,
        reply: str,
        mode: InputMode,
        message_id: str,
        inline: bool,
        language: str | None = None,
    ) -> Inbound:
        return Inbound(
            "reply",
            CHANNEL,
            bot.name,
            address,
            self.gateway.clock(),
            text=reply,
            input_mode=mode,
            message_id=message_id,
            language=language,
            line=bot.name,
            answered_inline=inline,
        )

    def _bot_for(self, data: Mapping[str, Any]) -> TelegramBot | None:
        """The bot the respondent talks to (the event's line); else the first one configured."""
        for name in (data.get("line"), data.get("provider")):
            if isinstance(name, str) and name in self.bots:
                return self.bots[name]
        return next(iter(self.bots.values()), None)

    async def _bring_up(self, bot: TelegramBot) -> bool:
        """initialize() (getMe), the webhook or polling set-up, start(); False to try again."""
        try:
            await bot.app.initialize()
            if bot.mode == "polling":
                await bot.app.bot.delete_webhook()  # getUpdates refuses while a webhook is set
            elif bot.webhook_url:
                await bot.app.bot.set_webhook(
                    bot.webhook_url, secret_token=bot.secret, allowed_updates=ALLOWED_UPDATES
                )
            await bot.app.start()
        except InvalidToken:
            # PTB's message quotes the token: say it without the token.
            raise ConfigError(
                f"channels.telegram.bots.{bot.name}: the Bot API refused the token"
            ) from None
        except TelegramError as exc:
            log.warning(
                "telegram bot not reachable yet, will retry",
                extra=fields(bot=bot.name, error=type(exc).__name__),
            )
            return False
        bot.ready = True
        if bot.mode == "polling":
            self._spawn(self._polling.run(bot))
        log.info("telegram bot ready", extra=fields(bot=bot.name, mode=bot.mode))
        return True

    async def _keep_trying(self, bot: TelegramBot) -> None:
        delay = 1.0
        try:
            while True:
                await asyncio.sleep(delay)
                if await self._bring_up(bot):
                    return
                delay = min(delay * 2, RETRY_CAP)
        except ConfigError as exc:
            log.error("telegram bot disabled", extra=fields(bot=bot.name, error=str(exc)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _chat_id(address: str) -> int:
    scheme, _, chat = address.partition(":")
    if scheme != CHANNEL or not re.fullmatch(r"-?[0-9]{1,20}", chat):
        raise DeliveryError("not a telegram:<chat id> address", retryable=False)
    return int(chat)


def _handled(bot: TelegramBot, inbound: Inbound, result: Result) -> Handled:
    """What the gateway's result means for Telegram; a reply answered inline keeps its prompts
    (a redelivery gets the stored ones again: Telegram ran no method from an answer it did not
    take, so they were not sent)."""
    status = "ignored" if result.outcome == "ignored" else "accepted"
    reason = result.reason or ("duplicate" if result.duplicate else "")
    pending = None
    if inbound.answered_inline and result.outbound:
        assert inbound.message_id is not None
        pending = Pending(bot.name, inbound.address, inbound.message_id, result)
    return Handled(status, reason, pending)
