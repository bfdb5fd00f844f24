"""SMS.ir (Iran): inbound by polling receive/latest, sends through send/bulk (X-API-KEY),
delivery states by polling send/{messageId}."""

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

API = "https://api.sms.ir"
log = logging.getLogger("seda.sms.smsir")
# Body `status` codes (apidocs.sms.ir): 1 done; 10-15 the key or the account; 20 rate limit.
KEY_PROBLEMS = frozenset({10, 11, 12, 13, 14, 15})
# Codes no retry can fix for this message: empty text, bad or empty mobile, a parameter too
# long, a blacklisted mobile, a text the provider did not approve.
PERMANENT = frozenset({103, 104, 107, 114, 115, 117})
# GET /v1/send/{messageId} -> data.deliveryState (null when none yet), per SMS.ir's own SDK and
# samples: IPeCompany/SmsPanelV2.DotNet IPE.SmsIrClient/Routes/ReportRoutes.cs and
# Models/Results/MessageReportResult.cs, IPeCompany/SmsPanelV2.DotNetCore.Samples
# IPE.SmsIrSamples.DotNetCore/Report/Models/DeliveryState.cs (enum DeliveryState):
# 0 unknown, 1 delivered to the phone, 2 not delivered to the phone, 3 being processed at the
# telecom, 4 did not reach the telecom, 5 reached the operator, 6 failed, 7 blacklisted.
STATUSES = {1: "delivered", 2: "undelivered", 3: "sent", 4: "failed", 5: "sent", 6: "failed",
            7: "failed"}  # fmt: skip


class SmsIr(PolledOnly):
    """One SMS.ir line; no signed push exists, so its webhook refuses and it is polled.

    receive/latest returns each message once and then counts it read (apidocs.sms.ir): the
    poll loop spools a fetched batch before processing it. Should the API ever return a
    message again, the line skips the ids it already holds, so both behaviours are safe.
    """

    name = "smsir"
    methods = ("POST", "GET")
    batch = 10  # ids per statuses() call; SMS.ir reports one message per request

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.key = line.setting("api_key")
        self.base = line.setting("base_url", API).rstrip("/")
        self.page = min(100, max(1, int(line.spec.get("page_size", 100))))
        self.max_pages = max(1, int(line.spec.get("max_pages", 10)))
        self.headers = {"X-API-KEY": self.key, "Accept": "application/json"}
        try:
            self.number = int(line.number)
        except ValueError:
            raise ValueError(
                f"channels.sms.lines.{line.name}: number must be the SMS.ir line's digits"
            ) from None

    async def fetch(self, http: aiohttp.ClientSession, known: Known) -> list[tuple[str, Received]]:
        """GET /v1/receive/latest?count=N, again while a full page brings new messages."""
        out: list[tuple[str, Received]] = []
        held: set[str] = set()
        url = f"{self.base}/v1/receive/latest"
        for page in range(self.max_pages):
            try:
                data = await fetch_json(
                    http, self.name, "GET", url, params={"count": str(self.page)},
                    headers=self.headers,
                )  # fmt: skip
                items = _data(data)
            except PollError:
                if page == 0:
                    raise
                break  # what the first pages brought is already marked read: keep it
            new = [m for m in map(self._message, items) if m and not (known(m[0]) or m[0] in held)]
            held.update(key for key, _ in new)
            out += new
            if len(items) < self.page or not new:
                break
        return out

    def _message(self, item: Any) -> tuple[str, Received] | None:
        if not isinstance(item, dict) or "receiveReturnId" not in item or "mobile" not in item:
            return None
        key = str(item["receiveReturnId"])
        try:
            sender = tel(_mobile(item["mobile"]), self.line.country)
        except Refused:
            log.warning("sms.ir message from a sender that is not a phone number; skipped",
                        extra=fields(line=self.line.name, message_id=key))  # fmt: skip
            return None
        to = str(item.get("number") or "") or None
        return key, Received(sender, str(item.get("messageText") or ""), key, to)

    async def statuses(self, http: aiohttp.ClientSession, ids: list[str]) -> list[Receipt]:
        """GET /v1/send/{id} for each message: its deliveryState now. An id SMS.ir does not
        report on (HTTP 400 or 404, or a body status other than 1) is left out; a refused key
        or an unreachable API raises PollError (the next round asks again)."""
        out: list[Receipt] = []
        for message_id in ids:
            if not message_id.isdigit():
                continue  # not an id SMS.ir gave (its ids are numbers): nothing to ask
            url = f"{self.base}/v1/send/{message_id}"
            try:
                answer = await fetch_json(http, self.name, "GET", url, headers=self.headers)
            except PollError as exc:
                if exc.status in (400, 404):
                    continue
                raise
            code = answer.get("status") if isinstance(answer, dict) else None
            if code in KEY_PROBLEMS:
                raise PollError(self.name, f"status {code}", auth=True)
            data = answer.get("data") if isinstance(answer, dict) else None
            if code != 1 or not isinstance(data, dict):
                continue
            state = data.get("deliveryState")
            raw = "" if state is None else str(state)
            status = STATUSES.get(int(raw), "unknown") if raw.isdigit() else "unknown"
            out.append(Receipt(message_id, status, raw))
        return out

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> list[str]:
        """POST /v1/send/bulk with one mobile; returns SMS.ir's message ids (data.messageIds)."""
        # SMS.ir's send API has no idempotency key: a retry after a lost answer may resend.
        body = {
            "lineNumber": self.number,
            "messageText": text,
            "mobiles": [national(to, self.line.country)],
        }
        status, raw = await call(
            http, self.name, "POST", f"{self.base}/v1/send/bulk", json=body, headers=self.headers
        )
        answer = _json(raw)
        code = answer.get("status") if isinstance(answer, dict) else None
        if status == 200 and code == 1:
            data = answer.get("data")
            ids = data.get("messageIds") if isinstance(data, dict) else None
            return [str(i) for i in ids if i is not None] if isinstance(ids, list) else []
        raise _failure(status, code)


def _failure(status: int, code: object) -> DeliveryError:
    """A typed error for a refused send; the key, the mobile and the text never appear."""
    if status == 401 or code in KEY_PROBLEMS:
        return AccountRefused(
            f"smsir refused the API key or the account (HTTP {status}, status {code}); "
            "fix the line's api_key, the send is retried"
        )
    if code in PERMANENT:
        return DeliveryError(f"smsir refused the message (status {code})", retryable=False)
    return DeliveryError(f"smsir answered HTTP {status}, status {code}", retryable=True)


def _data(answer: Any) -> list[Any]:
    code = answer.get("status") if isinstance(answer, dict) else None
    if code != 1:
        raise PollError("smsir", f"status {code}", auth=code in KEY_PROBLEMS)
    items = answer.get("data") or []
    if not isinstance(items, list):
        raise PollError("smsir", "data is not a list")
    return items


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _mobile(value: object) -> str:
    """SMS.ir gives mobiles as numbers without the trunk 0 (9121234567)."""
    digits = str(value).strip()
    return "0" + digits if len(digits) == 10 and digits.startswith("9") else digits
