"""Lines held after their provider refused a send for the account (see README, "When a provider
refuses a send"): nothing goes out on a held line until its hold (`account_hold`) has passed.

A provider account is its credentials: lines that send with the same ones (same provider, same
API, same keys) are one account at the provider, which refuses them all alike (bad credentials,
no credit, a suspended or demo account). So such a refusal holds every line of the account at
once, instead of each line asking the provider in turn to be refused again. A refusal of one
line's own settings (its sender number, its callback URL) holds that line only. A send that
goes through shows the account works: it frees its own line and every line held with it for
the account.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sms.base import Line

# The settings that name a provider account: equal values on two lines, the same account.
CREDENTIALS: Mapping[str, tuple[str, ...]] = {
    "twilio": ("account_sid", "auth_token"),
    "vonage": ("api_key", "api_secret"),
    "plivo": ("auth_id", "auth_token"),
    "kannel": ("username", "password"),
    "jasmin": ("username", "password"),
    "generic": ("send_url", "secret"),
    "kavenegar": ("api_key",),
    "smsir": ("api_key",),
    "ghasedak": ("api_key",),
    "melipayamak": ("username", "password"),
}


def account_of(line: Line) -> str:
    """The line's provider account, as a digest (the credentials themselves are never kept or
    shown here): the provider, its API address and the credentials the line sends with."""
    keys = ("base_url", *CREDENTIALS.get(line.provider, ()))
    named = [line.provider, *(str(line.spec.get(key, "")) for key in keys)]
    return hashlib.sha256("\0".join(named).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Hold:
    """A held line: since when (wall clock), until when (monotonic), the provider's reason, and
    the account it is held for (None: for the line's own settings)."""

    since: datetime
    until: float
    reason: str
    account: str | None


class Holds:
    """The held lines of the channel, by line name."""

    def __init__(self, lines: Mapping[str, Line], clock: Callable[[], datetime]) -> None:
        self._lines = lines
        self._clock = clock
        self._accounts = {name: account_of(line) for name, line in lines.items()}
        self.held: dict[str, Hold] = {}

    def holding(self, line: Line) -> Hold | None:
        """The line's hold while it lasts."""
        hold = self.held.get(line.name)
        return hold if hold is not None and time.monotonic() < hold.until else None

    def refuse(
        self, line: Line, reason: str, whole_account: bool, seconds: Callable[[Line], float]
    ) -> list[str]:
        """Hold the line (and, for the whole account, every line of it), each for its own
        `seconds(line)`; the names of the lines newly held (empty when all already were)."""
        account = self._accounts[line.name] if whole_account else None
        names = [line.name]
        if account is not None:
            names += [n for n, a in self._accounts.items() if a == account and n != line.name]
        now, fresh = self._clock(), []
        for name in names:
            before = self.held.get(name)
            if before is None:
                fresh.append(name)
            since = before.since if before is not None else now
            until = time.monotonic() + seconds(self._lines[name])
            self.held[name] = Hold(since, until, reason, account)
        return fresh

    def sent(self, line: Line) -> list[str]:
        """A send on the line went through: free it, and every line held for its account; the
        names of the lines freed."""
        account = self._accounts[line.name]
        freed = [n for n, h in self.held.items() if n == line.name or h.account == account]
        for name in freed:
            del self.held[name]
        return freed
