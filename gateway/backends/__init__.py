"""Backends receive Seda's events (answers, completed responses, opt-outs); one module each."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from gateway.ids import Clock

# Backend type -> module with `build(name, spec, *, clock) -> Backend`, imported only when used.
REGISTRY: dict[str, str] = {
    "jsonl": "gateway.backends.jsonl",
    "webhook": "gateway.backends.webhook",
    "telegram_alert": "social.alerts",  # low-score alerts to a Telegram chat (social/README.md)
}


class Backend(Protocol):
    """Where events go: deliver one event, or raise DeliveryError."""

    name: str

    async def deliver(self, event: dict[str, Any]) -> None:
        """Hand one event (the JSON envelope) to the backend; return only once it has it."""
        ...

    async def close(self) -> None:
        """Release files and connections."""
        ...


@runtime_checkable
class BatchBackend(Protocol):
    """Optional capability: take many events at once (a file appends them with one fsync)."""

    name: str

    async def deliver(self, event: dict[str, Any]) -> None:
        """As Backend.deliver."""
        ...

    async def deliver_batch(self, payloads: Sequence[str]) -> list[DeliveryError | None]:
        """Hand over events (their JSON text as committed) in order; None for each delivered."""
        ...

    async def close(self) -> None:
        """Release files and connections."""
        ...


class DeliveryError(Exception):
    """A delivery failed; says whether a retry can help, when, and whether to stop the backend."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        disable: bool = False,
        not_before: datetime | None = None,
        recipient: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after  # seconds, from the receiver (Retry-After)
        # retry_after is one recipient's limit (a Telegram chat, a WhatsApp number), not the
        # receiver's: only this event waits it out, the backend goes on with the others.
        self.recipient = recipient
        self.disable = disable  # the receiver is gone for good (HTTP 410): stop this backend
        # Not a failure: this event may not go before then (quiet hours); nothing else waits.
        self.not_before = not_before


def build_backend(name: str, spec: Mapping[str, Any], *, clock: Clock) -> Backend:
    """Make the backend a config entry describes (its `type` picks the module)."""
    kind = spec.get("type")
    if kind not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"backend {name!r}: unknown type {kind!r} (known: {known})")
    module = importlib.import_module(REGISTRY[str(kind)])
    backend: Backend = module.build(name, spec, clock=clock)
    return backend


def event_types(spec: Mapping[str, Any]) -> frozenset[str] | None:
    """The event types a backend's config asks for (its `events` list), None for all."""
    events = spec.get("events")
    return None if events is None else frozenset(str(e) for e in events)
