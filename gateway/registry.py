"""The one place that names channels: import strings, loaded only when a channel is enabled."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.model import Outbound
    from gateway.router import Gateway

CHANNELS: Mapping[str, str] = {
    "api": "gateway.api:ApiChannel",
    "ivr": "ivr_flows.channel:IvrChannel",
    "sms": "sms.channel:SmsChannel",
    "email": "email_in.channel:EmailChannel",
    "telegram": "social.telegram:TelegramChannel",
    "whatsapp": "social.whatsapp:WhatsAppChannel",
}


class Channel(Protocol):
    """What every channel adapter offers: its routes, and a start and stop."""

    name: str

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes this channel contributes (may be empty)."""
        ...

    async def start(self) -> None:
        """Begin listening or polling."""
        ...

    async def stop(self) -> None:
        """Stop cleanly."""
        ...


class Health(Protocol):
    """Optional: a channel that can tell whether it works now, for /healthz and /metrics."""

    def health(self) -> Mapping[str, Any]:
        """{"status": "ok" | "degraded" | "down", ...}: more keys say why (no personal data:
        /healthz answers without a token)."""
        ...


class Inviter(Protocol):
    """Optional capability: a channel that can reach a respondent first (SMS, email, chat)."""

    async def invite(self, address: str, prompts: list[Outbound]) -> None:
        """Send the first prompts of a new response to the address."""
        ...


class Addresser(Protocol):
    """Optional capability: a channel that checks an invitation's address (and line) before
    anything is stored, and gives the address in the form its own replies carry, so that a
    reply finds its response and nothing goes to an address the channel cannot reach."""

    def invitation_address(self, address: str, line: str | None) -> str:
        """The address as this channel writes it (tel:+E.164, ...); ValueError(reason) if the
        channel cannot send to it, or has no such line."""
        ...


class Sender(Protocol):
    """Optional capability: a channel that sends its prompts itself (SMS, email, chat).

    The router stores an `outbound.<channel>` event with the prompts in the same transaction as
    the step; the forwarder hands it to `deliver` with retries, in order per response, exactly
    as it delivers to a CEM backend, unless the response has moved on from the question it asks
    (server.StillAsked). Raise gateway.backends.DeliveryError on failure.
    """

    name: str

    async def deliver(self, event: dict[str, Any]) -> None:
        """Send `event["data"]["prompts"]` to `event["data"]["address"]`."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def sends_prompts(factory: ChannelFactory) -> bool:
    """Whether a channel sends its own prompts (has the Sender capability)."""
    return callable(getattr(factory, "deliver", None))


class ChannelFactory(Protocol):
    """Builds a channel from its config section."""

    def __call__(self, gateway: Gateway, spec: Mapping[str, Any]) -> Channel:
        """A ready (not yet started) channel."""
        ...


class SettingsCheck(Protocol):
    """What every channel factory offers as well: its block checked without starting anything,
    with the same parsing the channel starts with (`seda validate`, and `seda run` before it
    starts: gateway/config_check.py). The block it gets remembers which keys were looked up:
    the keys never looked up are reported as unknown, so the check must look at every setting
    the channel would use, also those used only later (when sending). A check that goes on
    past each mistake, looking up every key whatever it found (`checks_whole_block = True` on
    the factory), has a key it did not look up reported as unknown beside a mistake too;
    otherwise only a near miss of a key it looked for is, in a block where it stopped."""

    def check_settings(self, spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """Every problem found, one `channels.<name>.<key>: problem` line each (a ConfigError
        for the first also does); `surveys`: the survey ids there are (None: not known)."""
        ...


def checks_settings(factory: ChannelFactory) -> bool:
    """Whether a channel can check its block without starting (SettingsCheck)."""
    return callable(getattr(factory, "check_settings", None))


class UnknownChannel(LookupError):
    """A configured channel that Seda does not have (or whose package is not installed)."""


def load(name: str) -> ChannelFactory:
    """Import a channel's factory by its registered name."""
    target = CHANNELS.get(name)
    if target is None:
        known = ", ".join(sorted(CHANNELS))
        raise UnknownChannel(f"unknown channel {name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UnknownChannel(f"channel {name!r} is not available in this build ({exc})") from None
    factory: ChannelFactory = getattr(module, attr)
    return factory
