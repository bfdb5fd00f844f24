"""A channel that sends its own prompts, to test the core's Sender contract (no provider)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.backends import DeliveryError
from gateway.router import Gateway

SENT: list[dict[str, Any]] = []
FAIL_NEXT: list[int] = [0]


class RecordingChannel:
    """Records what the forwarder hands it; can fail a number of times first."""

    name = "recording"

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]):
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self) -> None:
        SENT.clear()

    async def stop(self) -> None:
        return None

    async def deliver(self, event: dict[str, Any]) -> None:
        if FAIL_NEXT[0] > 0:
            FAIL_NEXT[0] -= 1
            raise DeliveryError("provider down", retryable=True)
        SENT.append(event)

    async def close(self) -> None:
        return None
