"""Kavenegar (Iran): inbound by polling receive.json, sends through send.json with a localid."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.backends import DeliveryError
from sms.base import (
    Known,
    Line,
    PolledOnly,
    PollError,
    Received,
    fetch_json,
    national,
    post_checked,
    tel,
)

API = "https://api.kavenegar.com"


class Kavenegar(PolledOnly):
    """One Kavenegar line; it has no signed push, so its webhook refuses and it is polled."""

    name = "kavenegar"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.key = line.setting("api_key")
        self.base = line.setting("base_url", API).rstrip("/")

    async def fetch(self, http: aiohttp.ClientSession, known: Known) -> list[tuple[str, Received]]:
        """GET receive.json?linenumber=..&isread=0 (at most 100, marked read by Kavenegar)."""
        url = f"{self.base}/v1/{self.key}/sms/receive.json"
        params = {"linenumber": self.line.number, "isread": "0"}
        entries = _entries(await fetch_json(http, self.name, "GET", url, params=params))
        out: list[tuple[str, Received]] = []
        for entry in entries:
            message_id = str(entry["messageid"])
            sender = tel(str(entry["sender"]), self.line.country)
            text = str(entry.get("message") or "")
            out.append((message_id, Received(sender, text, message_id)))  # this line's only
        return out

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> str | None:
        """POST send.json (receptor, sender, message, localid: a retry is not sent twice)."""
        url = f"{self.base}/v1/{self.key}/sms/send.json"
        data = {
            "receptor": national(to, self.line.country),
            "sender": self.line.number,
            "message": text,
            "localid": key,
        }
        _, body = await post_checked(http, self.name, url, data=data)
        try:
            answer = json.loads(body)
            status = answer["return"]["status"]
        except (ValueError, KeyError, TypeError):
            raise DeliveryError("kavenegar answered an unreadable body", retryable=True) from None
        if status != 200:
            raise DeliveryError(f"kavenegar status {status}", retryable=False)
        entries = answer.get("entries") or [{}]
        first = entries[0] if isinstance(entries[0], dict) else {}
        return str(first["messageid"]) if "messageid" in first else None


def _entries(data: Any) -> list[dict[str, Any]]:
    status = data.get("return", {}).get("status") if isinstance(data, dict) else None
    if status != 200:
        raise PollError("kavenegar", f"status {status}")
    entries = data.get("entries") or []
    if not isinstance(entries, list):
        raise PollError("kavenegar", "entries is not a list")
    return [e for e in entries if isinstance(e, dict) and "messageid" in e and "sender" in e]
