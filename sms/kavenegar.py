"""Kavenegar (Iran): inbound by polling receive.json, sends through send.json with a localid."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from gateway.backends import DeliveryError
from sms.base import TIMEOUT, Ignored, Line, Received, Refused, e164, post_checked, tel

API = "https://api.kavenegar.com"


class Kavenegar:
    """One Kavenegar line; it has no signed push, so its webhook refuses and it is polled."""

    name = "kavenegar"
    methods = ("POST", "GET")

    def __init__(self, line: Line, now: Callable[[], float]) -> None:
        self.line = line
        self.key = line.setting("api_key")
        self.base = line.setting("base_url", API).rstrip("/")

    async def parse(self, request: web.Request, url: str) -> Received | Ignored:
        """Kavenegar lines are polled: an unsigned push cannot be trusted."""
        raise Refused(403, "this line is polled; Seda does not accept unsigned pushes for it")

    def answer(self, text: str | None) -> web.Response:
        """Not used (no webhook)."""
        return web.json_response({"status": "ok"})

    async def fetch(self, http: aiohttp.ClientSession) -> list[tuple[str, Received]]:
        """GET receive.json?linenumber=..&isread=0 (at most 100, marked read by Kavenegar)."""
        url = f"{self.base}/v1/{self.key}/sms/receive.json"
        params = {"linenumber": self.line.number, "isread": "0"}
        async with http.get(url, params=params, timeout=TIMEOUT) as response:
            body = await response.text()
            if response.status != 200:
                raise RuntimeError(f"kavenegar answered {response.status}")
        entries = _entries(body)
        out: list[tuple[str, Received]] = []
        for entry in entries:
            message_id = str(entry["messageid"])
            sender = tel(str(entry["sender"]), self.line.country)
            out.append((message_id, Received(sender, str(entry.get("message") or ""), message_id)))
        return out

    def _receptor(self, to: str) -> str:
        number = e164(to)
        home = f"+{self.line.country}" if self.line.country else None
        return "0" + number[len(home) :] if home and number.startswith(home) else "00" + number[1:]

    async def send(self, http: aiohttp.ClientSession, to: str, text: str, key: str) -> None:
        """POST send.json (receptor, sender, message, localid: a retry is not sent twice)."""
        url = f"{self.base}/v1/{self.key}/sms/send.json"
        data = {
            "receptor": self._receptor(to),
            "sender": self.line.number,
            "message": text,
            "localid": key,
        }
        _, body = await post_checked(http, self.name, url, data=data)
        try:
            status = json.loads(body)["return"]["status"]
        except (ValueError, KeyError, TypeError):
            raise DeliveryError("kavenegar answered an unreadable body", retryable=True) from None
        if status != 200:
            raise DeliveryError(f"kavenegar status {status}", retryable=False)


def _entries(body: str) -> list[dict[str, Any]]:
    data = json.loads(body)
    status = data.get("return", {}).get("status")
    if status != 200:
        raise RuntimeError(f"kavenegar status {status}")
    entries = data.get("entries") or []
    if not isinstance(entries, list):
        raise RuntimeError("kavenegar entries is not a list")
    return [e for e in entries if isinstance(e, dict) and "messageid" in e and "sender" in e]
