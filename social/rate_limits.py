"""Rate limits of one recipient: a Telegram chat's flood limit, a WhatsApp pair rate limit.

Telegram limits a bot per chat (about one message a second in a chat, 20 a minute in a group)
and as a whole (about 30 messages a second to different chats), and answers either with the
same 429 "Too Many Requests: retry after N" (Bot FAQ, "My bot is hitting limits"; Bot API
ResponseParameters has only retry_after, no scope). A 429 is taken as the chat's own limit:
that chat waits N seconds, the other chats go on. When several chats of one bot are refused
within a second, it is the bot's limit: the whole channel waits (the forwarder's hold).

WhatsApp says which limit it is: 131056 is the pair rate limit of one business number to one
user (about one message every 6 s), 130429 the number's throughput; only 131056 is held here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.backends import DeliveryError

SPREAD = 3  # distinct chats refused within WINDOW seconds: the bot's limit, not the chats'
WINDOW = 1.0


class RecipientHolds:
    """Per (line, recipient): until when sending must wait. Only recipients held now are kept."""

    def __init__(
        self,
        *,
        spread: int = SPREAD,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spread = spread
        self._window = window
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}  # (line, recipient) -> hold ends
        self._refused: dict[tuple[str, str], float] = {}  # (line, recipient) -> last 429 at

    def check(self, line: str, recipient: str) -> None:
        """Raise DeliveryError (this recipient only) while the recipient is held: nothing is
        sent to it before its retry_after ends, whichever of its events comes first."""
        until = self._until.get((line, recipient))
        if until is None:
            return
        left = until - self._clock()
        if left <= 0:
            del self._until[(line, recipient)]
        else:
            raise DeliveryError(
                "rate limited: waiting", retryable=True, retry_after=left, recipient=True
            )

    def refused(
        self, line: str, recipient: str, error: DeliveryError, *, spreads: bool
    ) -> DeliveryError:
        """`error` (with a retry_after) for a recipient: hold the recipient and mark the error
        as the recipient's, unless `spreads` and enough other recipients of the line were
        refused just now (then it stays the receiver's: the forwarder holds the backend)."""
        if error.retry_after is None or not error.retryable:
            return error
        now = self._clock()
        self._forget(now)
        key = (line, recipient)
        self._refused[key] = now
        recent = sum(
            1
            for (other, _), at in self._refused.items()
            if other == line and now - at <= self._window
        )
        if spreads and recent >= self._spread:
            return error
        self._until[key] = max(self._until.get(key, 0.0), now + error.retry_after)
        error.recipient = True
        return error

    def _forget(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
        for key in [k for k, at in self._refused.items() if now - at > self._window]:
            del self._refused[key]
