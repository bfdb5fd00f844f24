"""The SMS provider contract and the helpers every provider module shares."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict, MultiDictProxy

from gateway.backends import DeliveryError
from gateway.http import retry_after
from gateway.secret import same_secret

ReplyMode = Literal["webhook", "api"]
Params = MultiDict[str]
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_FORMATTING = re.compile(r"[\s\-().\u200c\u200e\u200f\u202a-\u202e]")
_E164 = re.compile(r"\+[1-9][0-9]{2,17}")
TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class Line:
    """One configured SMS line: a number at a provider, and how Seda talks to it."""

    name: str
    provider: str
    number: str
    reply: ReplyMode
    footer: str = ""
    rate: float | None = None
    verify: bool = True
    public_url: str | None = None
    max_segments: int = 10
    country: str | None = None  # calling code used for national numbers (0912... -> +98912...)
    # The survey a message that matches no open survey starts (None: such a message is ignored).
    default_survey: str | None = None
    # Credentials and provider options: never in a repr (a log line or a traceback's locals).
    spec: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def setting(self, key: str, default: str | None = None) -> str:
        """A provider setting as text; a missing required one is a configuration error."""
        value = self.spec.get(key, default)
        if value is None:
            raise ValueError(
                f"channels.sms.lines.{self.name}: {key} is required for {self.provider}"
            )
        return str(value)

    def used_to_send(self, *keys: str) -> None:
        """Settings a provider reads only when it sends (its send API's credentials): looked up
        now, so that a check of the line's block knows them; a missing one is said then."""
        for key in keys:
            self.spec.get(key)


@dataclass(frozen=True)
class Received:
    """An inbound SMS, verified and parsed, ready to become an Inbound."""

    sender: str  # tel:+E.164
    text: str
    message_id: str | None
    to: str | None = None  # the number it was sent to, when a polled provider says (routing)


@dataclass(frozen=True)
class Ignored:
    """A request that is acknowledged but is not a message (status callback, DLR, part)."""

    reason: str


@dataclass(frozen=True)
class Part:
    """One part of a concatenated SMS, verified and parsed; the channel holds it (on disk)
    until the message is whole (see parts.py)."""

    sender: str  # tel:+E.164
    ref: str  # the sender's reference for the whole message (it repeats after a while)
    total: int  # how many parts the message has, 1..255
    number: int  # which part this is, 1..total
    text: str
    message_id: str  # the provider's id for this part


# Normalised delivery statuses; the last three are final (a receipt never changes them).
STATUSES = ("queued", "sent", "delivered", "failed", "undelivered", "unknown")


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt (status callback, DLR) for a message Seda sent, verified and parsed."""

    message_id: str  # the provider's id for the message (Seda's own for Kannel)
    status: str  # one of STATUSES
    raw_status: str  # the provider's own word or code, as it came
    error: str | None = None  # the provider's error code, when it gives one


def error_code(raw: str | None) -> str | None:
    """A provider's error code as recorded: None when absent or zero (no error)."""
    code = (raw or "").strip()
    return None if not code or code.strip("0") == "" else code[:32]


class Refused(Exception):
    """A request Seda will not honour: forged (403), malformed (400), oversized (413)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Provider(Protocol):
    """What each provider module offers: parse and verify, answer, and send."""

    name: str
    methods: tuple[str, ...]  # HTTP methods its webhook uses

    async def parse(self, request: web.Request, url: str) -> Received | Part | Receipt | Ignored:
        """Verify and parse a webhook request (raise Refused when it cannot be honoured)."""
        ...

    def answer(self, text: str | None) -> web.Response:
        """The synchronous webhook response, carrying `text` as a reply when given."""
        ...

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """Send one SMS through the provider's API (raise DeliveryError on failure).

        Returns the provider's ids for what it sent (one per part where the provider counts
        parts), which its delivery receipts name; empty when its answer gives none. `key` (the
        outbox event id) is stable across retries.
        """
        ...


Known = Callable[[str], bool]


@runtime_checkable
class Concatenating(Protocol):
    """Optional capability: a provider that posts a long message part by part (parse returns
    Part); the channel holds the parts on disk until the message is whole."""

    concat_timeout: float  # seconds to wait for the missing parts, then record what came


@runtime_checkable
class Poller(Protocol):
    """Optional capability: a provider whose inbound messages are fetched, not pushed."""

    async def fetch(self, http: aiohttp.ClientSession, known: Known) -> list[tuple[str, Received]]:
        """New messages as (provider id, message); raise PollError when the provider fails.

        `known(id)` says whether Seda already holds a message, so a provider whose API returns
        messages again (it does not mark them read) can tell where the new ones end.
        """
        ...


@runtime_checkable
class StatusPoller(Protocol):
    """Optional capability: a polled provider whose delivery statuses can be asked for."""

    batch: int  # message ids per status request

    async def statuses(self, http: aiohttp.ClientSession, ids: list[str]) -> list[Receipt]:
        """The current status of these sent messages (ids the provider does not know are left
        out or reported unknown); raise PollError when the provider fails."""
        ...


class PollError(Exception):
    """A poll the provider did not answer usefully; the message names no secret and no number."""

    def __init__(
        self, provider: str, reason: str, status: int | None = None, *, auth: bool | None = None
    ) -> None:
        super().__init__(f"{provider}: {reason}")
        self.status = status
        self.auth = status in (401, 403) if auth is None else auth


async def fetch_json(
    http: aiohttp.ClientSession, provider: str, method: str, url: str, **kwargs: Any
) -> Any:
    """One poll request: the JSON body of a 2xx answer, else PollError (never the URL, which
    may carry an API key, nor the body, which may carry numbers)."""
    try:
        async with http.request(method, url, timeout=TIMEOUT, **kwargs) as response:
            status = response.status
            body = await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise PollError(provider, f"unreachable ({type(exc).__name__})") from None
    if status in (401, 403):
        raise PollError(provider, f"refused the credentials (HTTP {status})", status)
    if status >= 300:
        raise PollError(provider, f"answered HTTP {status}", status)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PollError(provider, "answered a body that is not JSON", status) from None


async def call(
    http: aiohttp.ClientSession, provider: str, method: str, url: str, **kwargs: Any
) -> tuple[int, str]:
    """One send request: status and body whatever the status (the provider module decides);
    DeliveryError (retryable) only when the provider cannot be reached."""
    try:
        async with http.request(method, url, timeout=TIMEOUT, **kwargs) as response:
            return response.status, await response.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise DeliveryError(
            f"{provider} unreachable ({type(exc).__name__})", retryable=True
        ) from None


def national(to: str, country: str | None) -> str:
    """tel:+98912... -> 0912... on a line of that country, else 00 and the international number
    (the form Iranian providers want)."""
    number = e164(to)
    home = f"+{country}" if country else None
    return "0" + number[len(home) :] if home and number.startswith(home) else "00" + number[1:]


def same_number(a: str, b: str) -> bool:
    """Whether two spellings name the same line (3000..., +983000..., 00983000...)."""
    x, y = (re.sub(r"\D", "", n).lstrip("0") for n in (a, b))
    if not x or not y:
        return False
    short, long = sorted((x, y), key=len)
    return long == short or (long.endswith(short) and long[: -len(short)] in ("98",))


def tel(raw: str, country: str | None = None) -> str:
    """A phone number as tel:+E.164 (Persian/Arabic digits, 00 and national 0 handled)."""
    if _E164.fullmatch(raw):  # already E.164 in ASCII (the common case): nothing to normalise
        return f"tel:{raw}"
    number = unicodedata.normalize("NFKC", raw).translate(_DIGITS)
    number = _FORMATTING.sub("", number)
    if number.startswith("00"):
        number = "+" + number[2:]
    elif not number.startswith("+"):
        # A national number gets the line's calling code; Vonage sends E.164 without the plus.
        national = number.startswith("0") and country
        number = f"+{country}{number[1:]}" if national else "+" + number
    if not _E164.fullmatch(number):
        raise Refused(400, "the sender is not a phone number")
    return f"tel:{number}"


def digits_only(address: str) -> str:
    """tel:+98912... -> 98912... (the form Vonage and Kannel want)."""
    return address.removeprefix("tel:").removeprefix("+")


def e164(address: str) -> str:
    """tel:+98912... -> +98912..."""
    return address.removeprefix("tel:")


def required(params: Mapping[str, str], *names: str) -> list[str]:
    """The named parameters, or a 400 naming the first that is missing."""
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise Refused(400, f"missing {missing[0]}")
    return [params[n] for n in names]


async def form(request: web.Request) -> Params:
    """The request's parameters: the query for GET, the form body for POST."""
    if request.method == "GET":
        return MultiDict(request.query)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Refused(400, "send the webhook as application/x-www-form-urlencoded")
    try:
        posted: MultiDictProxy[Any] = await request.post()
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None
    except (ValueError, LookupError, HttpProcessingError):  # no boundary, bad part, charset
        raise Refused(400, "the form cannot be read") from None
    if request.content_type == "application/x-www-form-urlencoded":
        return MultiDict(posted)  # every value is text: copied whole (in C), not one by one
    return MultiDict((k, v) for k, v in posted.items() if isinstance(v, str))


def receipt_url(line: Line, **query: str) -> str | None:
    """Where the provider should send this line's receipts: the line's public URL (the same
    webhook route), with `query` added; None when the line has no public_url."""
    if not line.public_url:
        return None
    if not query:
        return line.public_url
    mark = "&" if "?" in line.public_url else "?"
    return line.public_url + mark + urlencode(query)


def basic_auth(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def ascii_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²' and '٣', which int() refuses or reads."""
    return text.isascii() and text.isdigit()


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of two signatures or tokens."""
    return same_secret(given, expected)


def check_token(request: web.Request, line: Line) -> None:
    """Providers that cannot sign (Kannel, Jasmin): a shared token in the webhook URL."""
    if not line.verify:
        return
    token = line.setting("token")
    if not same(request.query.get("token", ""), token):
        raise Refused(403, "missing or wrong token")


class AccountRefused(DeliveryError):
    """The provider refused the line's account, not the message: credentials, credit, a
    suspended account, a sender the account may not use. Every message of the line would fail
    the same way until the operator acts, so it is retried (nothing waiting is lost), and the
    channel holds the line, logs an error and says so in /healthz (see channel.py).

    `whole_account`: the refusal is the account's (credentials, credit, a suspended account),
    so every line with the same credentials is held (sms/holds.py); False when it is about this
    line's own settings (its sender number, its callback URL): that line only."""

    def __init__(self, message: str, whole_account: bool = True) -> None:
        super().__init__(message, retryable=True)
        self.whole_account = whole_account


async def fail_for(
    response: aiohttp.ClientResponse,
    provider: str,
    account: frozenset[int] = frozenset(),
    line_codes: frozenset[int] = frozenset(),
) -> DeliveryError:
    """A typed delivery error for an HTTP failure: 401, 402 and 403 (and the provider's own
    `account` codes) refuse the account (AccountRefused, retried; of those codes, `line_codes`
    are about the line's own settings, not the whole account); 408, 425, 429 and 5xx can be
    retried; any other 4xx is about the message (the dead letter)."""
    wait = retry_after(response.headers.get("Retry-After"), time.time())
    status = response.status
    code = await _error_code(response) if account else None
    if status in (401, 402, 403) or (code is not None and code in account):
        what = f" (code {code})" if code is not None else ""
        return AccountRefused(
            f"{provider} refused the account: HTTP {status}{what}",
            whole_account=code is None or code not in line_codes,
        )
    retryable = status in (408, 425, 429) or status >= 500
    what = f", code {code}" if code is not None else ""
    return DeliveryError(
        f"{provider} answered {status}{what}", retryable=retryable, retry_after=wait
    )


async def _error_code(response: aiohttp.ClientResponse) -> int | None:
    """The numeric `code` of a JSON error body (Twilio's), None when there is none."""
    try:
        body = json.loads(await response.read())
    except (ValueError, aiohttp.ClientError, TimeoutError):
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


async def post_checked(
    http: aiohttp.ClientSession, provider: str, url: str, **kwargs: Any
) -> tuple[int, str]:
    """POST (or GET with method='GET'), raising DeliveryError for failures; returns status, body.

    `account`: the provider's error codes (a JSON body's `code`) that refuse the account;
    `line_codes`: those of them about the line's own settings (fail_for)."""
    method = kwargs.pop("method", "POST")
    account: frozenset[int] = kwargs.pop("account", frozenset())
    line_codes: frozenset[int] = kwargs.pop("line_codes", frozenset())
    try:
        async with http.request(method, url, timeout=TIMEOUT, **kwargs) as response:
            if response.status >= 300:
                raise await fail_for(response, provider, account, line_codes)
            return response.status, await response.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise DeliveryError(
            f"{provider} unreachable ({type(exc).__name__})", retryable=True
        ) from None


class TokenBucket:
    """A send rate limit: `rate` messages per second, evenly spaced (1/rate apart).

    A bucket of one: a bucket of `rate` let a burst of `rate` go at once and then `rate` more
    within the same second, nearly twice what the provider allows (its limit counts any
    second, and it refuses or queues the excess)."""

    def __init__(self, rate: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.capacity = 1.0
        self.tokens = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        """Wait until one message may be sent."""
        async with self._lock:
            while True:
                now = self._clock()
                self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class PolledOnly:
    """What every polled provider (the Iranian ones) says to a push: no unsigned webhooks."""

    async def parse(self, request: web.Request, url: str) -> Received | Receipt | Ignored:
        """A polled line refuses pushes: an unsigned push cannot be trusted."""
        raise Refused(403, "this line is polled; Seda does not accept unsigned pushes for it")

    def answer(self, text: str | None) -> web.Response:
        """Not used (no webhook)."""
        return web.json_response({"status": "ok"})
