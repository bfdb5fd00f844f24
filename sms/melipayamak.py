"""Melipayamak (Iran): inbound by reading the inbox with GetMessages, sends through SendSMS."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.backends import DeliveryError
from gateway.logs import fields
from sms.base import (
    AccountRefused,
    Known,
    Line,
    PolledOnly,
    PollError,
    Received,
    Refused,
    call,
    fetch_json,
    national,
    tel,
)

API = "https://rest.payamak-panel.com"
INBOX = "1"  # GetMessages `location`: 1 = received messages
# No delivery receipts yet. Melipayamak's SDKs (Melipayamak/melipayamak-python
# melipayamak/sms/rest.py is_delivered, and the Node, PHP, Java, Go clients) POST
# username, password and recId to /api/SendSMS/GetDeliveries2, but none documents its answer.
# Melipayamak's help page for the SOAP Send service (www.melipayamak.com/help/, "راهنمای وب
# سرویس Send", methods GetDeliveries/GetDelivery) gives the codes: 0 sent to the telecom,
# 1 delivered to the phone, 2 not delivered to the phone, 3 telecom error, 5 unknown error,
# 8 reached the telecom, 16 did not reach the telecom, 35 blacklist, 100 unknown, 200 sent,
# 300 filtered, 400 in the send list, 500 not accepted. Where the REST answer carries that code
# (its `Value`?) is not documented, so it is not polled: the RecId is recorded, no more.
log = logging.getLogger("seda.sms.melipayamak")


class Melipayamak(PolledOnly):
    """One Melipayamak line; no signed push exists, so its webhook refuses and it is polled.

    GetMessages reads the inbox by offset (`index`, `count` up to 100) and marks nothing we
    can rely on, so the same messages come back on every poll: ids already held are skipped,
    and pages are read until one brings nothing new. The inbox order is not documented: if
    the ids show it oldest first, the loop reads on to the end and starts there next time.
    """

    name = "melipayamak"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.username = line.setting("username")
        self.password = line.setting("password")
        self.base = line.setting("base_url", API).rstrip("/")
        self.page = min(100, max(1, int(line.spec.get("page_size", 100))))
        self.max_pages = max(1, int(line.spec.get("max_pages", 10)))
        self.resume = 0  # where reading starts when the inbox is oldest first
        self.oldest_first = False

    async def fetch(self, http: aiohttp.ClientSession, known: Known) -> list[tuple[str, Received]]:
        """POST GetMessages (location 1) page by page until a page brings nothing new."""
        out: list[tuple[str, Received]] = []
        held: set[str] = set()
        index = self.resume
        for page in range(self.max_pages):
            try:
                items = _messages(await self._page(http, index))
            except PollError:
                if page == 0:
                    raise
                break  # nothing is consumed by reading: the next tick reads these pages again
            if not items and index and page == 0:
                self.resume = 0  # the inbox shrank (messages deleted): read from the start
                break
            new = [m for m in map(self._message, items) if m and not (known(m[0]) or m[0] in held)]
            held.update(key for key, _ in new)
            out += new
            self.oldest_first = _oldest_first(items, self.oldest_first)
            if len(items) < self.page:
                if self.oldest_first:  # next time, from the last full page before the end
                    self.resume = max(0, index + len(items) - self.page)
                break
            if not new and not self.oldest_first:
                break  # newest first: the rest is older, and held already
            index += len(items)
            if self.oldest_first:
                self.resume = index
        return out

    async def _page(self, http: aiohttp.ClientSession, index: int) -> Any:
        # `from` left empty reads every line of the account; the line is chosen by
        # RecipientNumber, so a message to another number never answers a survey here.
        data = {"username": self.username, "password": self.password, "location": INBOX,
                "index": str(index), "count": str(self.page), "from": ""}  # fmt: skip
        url = f"{self.base}/api/SendSMS/GetMessages"
        return await fetch_json(http, self.name, "POST", url, data=data)

    def _message(self, item: Any) -> tuple[str, Received] | None:
        if not isinstance(item, dict) or item.get("MsgID") is None:
            return None
        key = str(item["MsgID"])
        raw_sender = item.get("SenderNumber") or item.get("Sender") or ""
        try:
            sender = tel(str(raw_sender), self.line.country)
        except Refused:
            log.warning("melipayamak message from a sender that is not a phone number; skipped",
                        extra=fields(line=self.line.name, message_id=key))  # fmt: skip
            return None
        to = str(item.get("RecipientNumber") or item.get("Receiver") or "") or None
        return key, Received(sender, str(item.get("Body") or ""), key, to)

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST SendSMS; a RecId in `Value` means accepted (returned as the message id)."""
        # Melipayamak's send API has no idempotency key: a retry after a lost answer may resend.
        data = {"username": self.username, "password": self.password,
                "to": national(to, self.line.country), "from": self.line.number, "text": text,
                "isFlash": "false"}  # fmt: skip
        status, raw = await call(
            http, self.name, "POST", f"{self.base}/api/SendSMS/SendSMS", data=data
        )
        answer = _json(raw)
        ret = answer.get("RetStatus") if isinstance(answer, dict) else None
        value = str(answer.get("Value", "")) if isinstance(answer, dict) else ""
        if status == 200 and ret == 1 and value.isdigit() and int(value) > 1000:
            return [value]  # the RecId (GetDeliveries2 reports on it)
        if status in (401, 403) or (status == 200 and value == "0"):
            return_code = f"HTTP {status}, RetStatus {ret}, Value {value or '-'}"
            raise AccountRefused(
                f"melipayamak refused the credentials ({return_code}); fix the line's username "
                "and password, the send is retried"
            )
        if 400 <= status < 500 and status not in (408, 429):
            raise DeliveryError(f"melipayamak answered HTTP {status}", retryable=False)
        # Any other code: the code table is not published with the REST API; retry with backoff
        # (the outbox gives up after its horizon) rather than drop a prompt.
        raise DeliveryError(
            f"melipayamak did not accept the message (HTTP {status}, RetStatus {ret}, "
            f"Value {value[:8] or '-'})",
            retryable=True,
        )


def _messages(answer: Any) -> list[Any]:
    """Data from {MyBase: {RetStatus, ...}, Data: [...]} (or the same keys at the top)."""
    if not isinstance(answer, dict):
        raise PollError("melipayamak", "answered something that is not an object")
    mine = answer.get("MyBase")
    base: dict[str, Any] = mine if isinstance(mine, dict) else answer
    ret = base.get("RetStatus")
    if ret != 1 and str(base.get("StrRetStatus", "")).lower() != "ok":
        value = str(base.get("Value", ""))
        raise PollError("melipayamak", f"RetStatus {ret}, Value {value[:8] or '-'}",
                        auth=value == "0")  # fmt: skip
    items = answer.get("Data") or answer.get("Messages") or []
    if not isinstance(items, list):
        raise PollError("melipayamak", "Data is not a list")
    return items


def _oldest_first(items: list[Any], before: bool) -> bool:
    """Whether a page lists the oldest message first (by its numeric MsgIDs)."""
    ids = [int(i["MsgID"]) for i in items if isinstance(i, dict) and str(i.get("MsgID")).isdigit()]
    return ids[0] < ids[-1] if len(ids) >= 2 and ids[0] != ids[-1] else before


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
