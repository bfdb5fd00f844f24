"""One-click unsubscribe over HTTPS (RFC 8058): `POST /email/unsubscribe/{token}` opts out.

Invitations carry `List-Unsubscribe: <https://…/email/unsubscribe/TOKEN>, <mailto:…>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`. A mail provider's unsubscribe button
POSTs `List-Unsubscribe=One-Click` to the URL; that, and nothing else, opts the respondent
out. A GET (a person opening the link, or a link scanner) shows a page whose button makes that
POST, and changes nothing. The token names one response and is signed together with the
respondent's address, so it opts out that address and no other.
"""

from __future__ import annotations

import html
import logging
import uuid
from dataclasses import dataclass, replace

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from email_in import texts
from email_in.links import page
from email_in.texts import say
from email_in.tokens import Tokens
from gateway.logs import fields
from gateway.model import Inbound
from gateway.router import Gateway
from gateway.store import SessionRow

log = logging.getLogger("seda.email")

PATH = "/email/unsubscribe/{token}"
PROVIDER = "one-click"
ONE_CLICK = ("List-Unsubscribe", "One-Click")  # the body RFC 8058 section 3.1 prescribes


def scope(address: str) -> str:
    """The token scope of an address's unsubscribe link: the address itself is signed."""
    return f"unsubscribe:{address}"


@dataclass(frozen=True)
class Target:
    """The response a genuine unsubscribe token names."""

    row: SessionRow
    token: str

    @property
    def language(self) -> str:
        """The response's language."""
        return str(self.row.data.get("language", "en"))


class Unsubscribe:
    """Makes unsubscribe URLs for invitations and serves them."""

    def __init__(self, gateway: Gateway, tokens: Tokens, base: str | None):
        self.gateway = gateway
        self.tokens = tokens
        self.base = base

    def url(self, response_id: str, address: str) -> str | None:
        """The one-click URL for a response's address (None without a public base URL)."""
        if self.base is None:
            return None
        token = self.tokens.issue(response_id, scope(address))
        return f"{self.base}/email/unsubscribe/{token}"

    def routes(self) -> list[web.RouteDef]:
        """The confirmation page and the one-click POST."""
        return [web.get(PATH, self.confirm), web.post(PATH, self.unsubscribe)]

    async def confirm(self, request: web.Request) -> web.Response:
        """GET: a page with a button that unsubscribes; the GET itself changes nothing."""
        target = await self._target(request)
        if isinstance(target, web.Response):
            return target
        language = target.language
        if await self._opted_out(target):
            return _say(language, texts.UNSUBSCRIBE_DONE)
        name, value = ONE_CLICK
        body = (
            f"<h1>{_e(say(texts.UNSUBSCRIBE_ASK, language))}</h1>"
            f'<form method="post"><input type="hidden" name="{name}" value="{value}">'
            f'<button type="submit" style="font-size:1.1em;padding:8px 20px">'
            f"{_e(say(texts.UNSUBSCRIBE_BUTTON, language))}</button></form>"
        )
        return page(language, say(texts.UNSUBSCRIBE_ASK, language), body)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        """POST `List-Unsubscribe=One-Click`: opt the respondent out, once."""
        target = await self._target(request)
        if isinstance(target, web.Response):
            return target
        try:
            form = await request.post()
        except (ValueError, LookupError, HttpProcessingError):  # bad boundary, part or charset
            form = None
        name, value = ONE_CLICK
        if form is None or form.get(name) != value:
            return _say(target.language, texts.UNSUBSCRIBE_NOT_ONE_CLICK, 400)
        if await self._opted_out(target):
            return _say(target.language, texts.UNSUBSCRIBE_DONE)  # a repeat changes nothing
        inbound = Inbound(
            kind="reply",
            channel="email",
            provider=PROVIDER,
            address=target.row.address,
            text="unsubscribe",
            message_id=f"unsubscribe-link.{target.token}",
            language=target.language,
            received_at=self.gateway.clock(),
            answered_inline=True,  # this page is the confirmation: no email after it
        )
        result = await self.gateway.receive(inbound)
        if not await self._opted_out(target):
            # The link was used before and the respondent opted in again since (START): its
            # message id is a repeat that changes nothing, so this opt-out gets an id of its own.
            again = f"{inbound.message_id}.{inbound.received_at:%Y%m%dT%H%M%S%f}"
            result = await self.gateway.receive(replace(inbound, message_id=again))
        log.info("email one-click unsubscribe", extra=fields(outcome=result.outcome))
        return _say(target.language, texts.UNSUBSCRIBE_DONE)

    async def _opted_out(self, target: Target) -> bool:
        return await self.gateway.store.is_suppressed(*self.gateway.opt_out_ids(target.row.address))

    async def _target(self, request: web.Request) -> Target | web.Response:
        token = request.match_info["token"]
        invalid = _say("en", texts.PAGE_INVALID, 404)
        opened = self.tokens.open(token)
        if opened is None:
            return invalid
        rid, tag = opened
        row = await self.gateway.store.session(str(uuid.UUID(bytes=rid)))
        if row is None or row.channel != "email":
            return invalid
        if not self.tokens.check(rid, tag, scope(row.address)):
            return invalid
        return Target(row, token)


def _say(language: str, words: dict[str, str], status: int = 200) -> web.Response:
    text = say(words, language)
    return page(language, text, f"<p>{_e(text)}</p>", status)


def _e(text: str) -> str:
    return html.escape(text, quote=True)
