"""Ghasedak (Iran): inbound by polling GetReceivedSmses, sends through SendSingleSMS (ApiKey),
delivery statuses by polling CheckSmsStatus."""

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
    Receipt,
    Received,
    Refused,
    call,
    fetch_json,
    national,
    tel,
)

API = "https://gw.ghasedak.me/Rest/api/v1/WebService"
PAGE = 100  # GetReceivedSmses returns the latest 100 (ghasedak's API reference)
log = logging.getLogger("seda.sms.ghasedak")
BY_MESSAGE_ID = "1"  # CheckSmsStatus Type: 1 = Ids are messageIds, 2 = clientReferenceIds
# CheckSmsStatus -> data[].status, Ghasedak's SendStatus (ghasedakapi/GhasedakSms.Core
# GhasedakSms.Core/Enum/SendStatus.cs, the same values in ghasedakapi/ghasedak_sms_python
# ghasedak_sms/enums/send_status.py; the item shape in GhasedakSms.Core/Dto/
# SmsStatusResponseItems.cs): 0 awaiting approval, 1 rejected, 2 being sent, 3 in the send
# queue, 4 sent, 5 debug mode (not sent: unknown here), 6 failed inside Ghasedak, 7 canceled,
# 8 blacklisted inside Ghasedak, 9 paused; once sent: 10 sent to the provider, 11 reached the
# provider, 12 blacklisted, 13 not delivered, 14 delivered, 15 filtered, 16 failed,
# 17 processing.
STATUSES = {0: "queued", 1: "failed", 2: "queued", 3: "queued", 4: "sent", 6: "failed",
            7: "failed", 8: "failed", 9: "queued", 10: "sent", 11: "sent", 12: "failed",
            13: "undelivered", 14: "delivered", 15: "failed", 16: "failed",
            17: "queued"}  # fmt: skip


class Ghasedak(PolledOnly):
    """One Ghasedak line; no signed push exists, so its webhook refuses and it is polled.

    GetReceivedSmses?IsRead=false returns the latest unread messages; whether reading them
    marks them read is not documented. Both are safe here: a batch is spooled before it is
    processed (in case it was marked read), and ids already held are skipped (in case the same
    messages come back). Sends carry the outbox event id as ClientReferenceId, and a send
    retried in the same process first asks CheckSmsStatus whether that id was already accepted.
    The delivery status of what was sent is asked for by messageId (StatusPoller).
    """

    name = "ghasedak"
    methods = ("POST", "GET")
    batch = 100  # messageIds per CheckSmsStatus request (Seda's choice: no limit is documented)

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.key = line.setting("api_key")
        self.base = line.setting("base_url", API).rstrip("/")
        self.max_pages = max(1, int(line.spec.get("max_pages", 10)))
        self.headers = {"ApiKey": self.key, "Accept": "application/json"}
        self._tried: set[str] = set()  # outbox ids sent once already (answer possibly lost)

    async def fetch(self, http: aiohttp.ClientSession, known: Known) -> list[tuple[str, Received]]:
        """GET GetReceivedSmses?LineNumber=..&IsRead=false, again while a full page is new."""
        out: list[tuple[str, Received]] = []
        held: set[str] = set()
        params = {"LineNumber": self.line.number, "IsRead": "false"}
        url = f"{self.base}/GetReceivedSmses"
        for page in range(self.max_pages):
            try:
                answer = await fetch_json(http, self.name, "GET", url, params=params,
                                          headers=self.headers)  # fmt: skip
                items = _items(answer)
            except PollError:
                if page == 0:
                    raise
                break  # keep what the first pages brought: it may be marked read now
            new = [m for m in map(self._message, items) if m and not (known(m[0]) or m[0] in held)]
            held.update(key for key, _ in new)
            out += new
            if len(items) < PAGE or not new:
                break
        return out

    async def statuses(self, http: aiohttp.ClientSession, ids: list[str]) -> list[Receipt]:
        """GET CheckSmsStatus?Type=1&Ids=a&Ids=b: the status of messages sent from here (ids
        Ghasedak does not list are left out)."""
        params = [("Type", BY_MESSAGE_ID), *(("Ids", i) for i in ids)]
        url = f"{self.base}/CheckSmsStatus"
        answer = await fetch_json(http, self.name, "GET", url, params=params, headers=self.headers)
        asked = set(ids)
        out: list[Receipt] = []
        for item in _items(answer):
            message_id = str(item.get("messageId")) if isinstance(item, dict) else ""
            if message_id not in asked:
                continue
            raw = "" if item.get("status") is None else str(item["status"])
            status = STATUSES.get(int(raw), "unknown") if raw.isdigit() else "unknown"
            out.append(Receipt(message_id, status, raw))
        return out

    def _message(self, item: Any) -> tuple[str, Received] | None:
        if not isinstance(item, dict) or item.get("id") is None or not item.get("sender"):
            return None
        key = str(item["id"])
        try:
            sender = tel(str(item["sender"]), self.line.country)
        except Refused:
            log.warning("ghasedak message from a sender that is not a phone number; skipped",
                        extra=fields(line=self.line.name, message_id=key))  # fmt: skip
            return None
        # Asked by LineNumber: every message is this line's (no `to`, nothing to route).
        return key, Received(sender, str(item.get("message") or ""), key)

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST SendSingleSMS with ClientReferenceId = the outbox event id; returns
        Ghasedak's messageId."""
        if key in self._tried:
            accepted = await self._accepted(http, key)
            if accepted is not None:
                return [accepted]  # the earlier attempt went through; its answer was lost
        self._tried.add(key)
        body = {
            "lineNumber": self.line.number,
            "receptor": national(to, self.line.country),
            "message": text,
            "clientReferenceId": key,
            "udh": False,
        }
        status, raw = await call(
            http, self.name, "POST", f"{self.base}/SendSingleSMS", json=body, headers=self.headers
        )
        answer = _json(raw)
        if 200 <= status < 300 and isinstance(answer, dict) and answer.get("isSuccess") is True:
            self._tried.discard(key)
            data = answer.get("data") or {}
            message_id = data.get("messageId") if isinstance(data, dict) else None
            return [] if message_id is None else [str(message_id)]
        code = answer.get("statusCode") if isinstance(answer, dict) else None
        error = _failure(status, code)
        if not error.retryable:
            self._tried.discard(key)  # never retried: nothing to check later
        raise error

    async def _accepted(self, http: aiohttp.ClientSession, key: str) -> str | None:
        """Ghasedak's id for a message sent with this ClientReferenceId, if it has one."""
        url = f"{self.base}/CheckSmsStatus"
        try:
            params = {"Type": "2", "Ids": key}  # Type 2: look up by ClientReferenceId
            answer = await fetch_json(http, self.name, "GET", url, params=params,
                                      headers=self.headers)  # fmt: skip
        except PollError as exc:
            raise DeliveryError(f"{exc} (checking an earlier send)", retryable=True) from None
        items = answer.get("data") if isinstance(answer, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and str(item.get("clientReferenceId")) == key:
                return str(item.get("messageId") or key)
        return None


def _failure(status: int, code: object) -> DeliveryError:
    """A typed error for a refused send; the key, the receptor and the text never appear."""
    if status in (401, 403) or code in (401, 403):
        return AccountRefused(
            f"ghasedak refused the API key (HTTP {status}, statusCode {code}); "
            "fix the line's api_key, the send is retried"
        )
    if status in (400, 404, 422) or code in (400, 422):
        return DeliveryError(f"ghasedak refused the message (HTTP {status}, statusCode {code})",
                             retryable=False)  # fmt: skip
    return DeliveryError(f"ghasedak answered HTTP {status}, statusCode {code}", retryable=True)


def _items(answer: Any) -> list[Any]:
    if not isinstance(answer, dict) or answer.get("isSuccess") is not True:
        code = answer.get("statusCode") if isinstance(answer, dict) else None
        raise PollError("ghasedak", f"isSuccess false (statusCode {code})",
                        auth=code in (401, 403))  # fmt: skip
    data = answer.get("data") or {}
    items = (data.get("items") or []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise PollError("ghasedak", "data.items is not a list")
    return items


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
