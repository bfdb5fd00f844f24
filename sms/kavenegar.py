"""Kavenegar (Iran): inbound by polling receive.json, sends through send.json with a localid,
delivery statuses by polling status.json."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.backends import DeliveryError
from sms.base import (
    AccountRefused,
    Known,
    Line,
    PolledOnly,
    PollError,
    Receipt,
    Received,
    call,
    fetch_json,
    national,
    tel,
)

API = "https://api.kavenegar.com"
# status.json codes (Kavenegar's API reference; the SDKs' MessageStatus) -> Seda's statuses:
# 1 queued, 2 scheduled, 4 and 5 sent on to the operator, 6 failed at the operator,
# 10 delivered, 11 not delivered, 13 canceled, 14 blocked by the recipient, 100 unknown id.
STATUSES = {1: "queued", 2: "queued", 4: "sent", 5: "sent", 6: "failed", 10: "delivered",
            11: "undelivered", 13: "failed", 14: "failed"}  # fmt: skip
# A refused send answers an HTTP error with the code again in return.status (kavenegar-go
# client.go). Codes the operator or time can cure are retried, so that nothing waiting is lost
# meanwhile: 401 account disabled, 403 API key not valid, 409 server busy, 412 sender (the
# line's number) not valid for the account, 416 the calling IP not allowed, 418 credit used up,
# 429 and 451 too many requests, 501 a demo account (sends to its owner only). Anything else in
# 4xx is about the message itself (411 recipient, 413 empty or too long, 422 characters, ...):
# the dead letter. Kavenegar's REST reference, "general result codes" (kavenegar.com/rest.html).
CURABLE = frozenset({401, 403, 409, 412, 416, 418, 429, 451, 501})
ACCOUNT = frozenset({401, 403, 412, 416, 418, 501})  # of those, the account's (the line held)
LINE = frozenset({412})  # of those, the line's own number: that line only, not the account's


class Kavenegar(PolledOnly):
    """One Kavenegar line; it has no signed push, so its webhook refuses and it is polled."""

    name = "kavenegar"
    methods = ("POST", "GET")
    batch = 100  # message ids per status.json request

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.key = line.setting("api_key")
        self.base = line.setting("base_url", API).rstrip("/")

    async def fetch(self, http: aiohttp.ClientSession, known: Known) -> list[tuple[str, Received]]:
        """GET receive.json?linenumber=..&isread=0 (at most 100, marked read by Kavenegar)."""
        url = f"{self.base}/v1/{self.key}/sms/receive.json"
        params = {"linenumber": self.line.number, "isread": "0"}
        entries = _entries(await fetch_json(http, self.name, "GET", url, params=params), "sender")
        out: list[tuple[str, Received]] = []
        for entry in entries:
            message_id = str(entry["messageid"])
            sender = tel(str(entry["sender"]), self.line.country)
            text = str(entry.get("message") or "")
            out.append((message_id, Received(sender, text, message_id)))  # this line's only
        return out

    async def statuses(self, http: aiohttp.ClientSession, ids: list[str]) -> list[Receipt]:
        """GET status.json?messageid=a,b,c: the current status of messages sent from here."""
        url = f"{self.base}/v1/{self.key}/sms/status.json"
        params = {"messageid": ",".join(ids)}
        out: list[Receipt] = []
        for entry in _entries(await fetch_json(http, self.name, "GET", url, params=params)):
            raw = str(entry.get("status"))
            status = STATUSES.get(int(raw), "unknown") if raw.isdigit() else "unknown"
            out.append(Receipt(str(entry["messageid"]), status, raw))
        return out

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST send.json (receptor, sender, message, localid: a retry is not sent twice);
        returns the messageid of each entry."""
        url = f"{self.base}/v1/{self.key}/sms/send.json"
        data = {
            "receptor": national(to, self.line.country),
            "sender": self.line.number,
            "message": text,
            "localid": key,
        }
        http_status, body = await call(http, self.name, "POST", url, data=data)
        answer: Any = None
        with contextlib.suppress(ValueError):
            answer = json.loads(body)
        ret = answer.get("return") if isinstance(answer, dict) else None
        status = ret.get("status") if isinstance(ret, dict) else None
        if http_status != 200 or status != 200:
            raise _failure(http_status, status)
        entries = answer.get("entries")
        listed = entries if isinstance(entries, list) else []
        return [str(e["messageid"]) for e in listed if isinstance(e, dict) and "messageid" in e]


def _failure(http_status: int, status: object) -> DeliveryError:
    """A typed error for a refused send (the key, the number and the text never appear)."""
    # No status: an unreadable body, judged by its HTTP status alone.
    code = status if isinstance(status, int) and not isinstance(status, bool) else http_status
    what = f"kavenegar answered HTTP {http_status}, status {status}"
    if code in ACCOUNT:
        return AccountRefused(
            f"{what}; check the line's api_key, number and credit", whole_account=code not in LINE
        )
    if code in CURABLE or code == 200 or code >= 500 or http_status >= 500:
        return DeliveryError(f"{what}; the send is retried", retryable=True)
    return DeliveryError(f"{what}: the message was refused", retryable=False)


def _entries(data: Any, *keys: str) -> list[dict[str, Any]]:
    status = data.get("return", {}).get("status") if isinstance(data, dict) else None
    if status != 200:
        raise PollError("kavenegar", f"status {status}")
    entries = data.get("entries") or []
    if not isinstance(entries, list):
        raise PollError("kavenegar", "entries is not a list")
    return [e for e in entries if isinstance(e, dict) and all(k in e for k in ("messageid", *keys))]
