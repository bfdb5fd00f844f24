"""Quiet hours: no invitation or reminder reaches a respondent at night, in their time zone.

Only what Seda starts is held back (invitations and reminders). The next question after a
respondent's own reply goes out at once: they are awake and talking to us.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Calling codes of countries with a single time zone, longest first when matching. A respondent
# elsewhere (or on a channel without phone numbers) gets the configured default zone; an
# invitation can name the zone itself with context `timezone`.
ZONES_BY_CALLING_CODE: Mapping[str, str] = {
    "+98": "Asia/Tehran",
    "+93": "Asia/Kabul",
    "+90": "Europe/Istanbul",
    "+971": "Asia/Dubai",
    "+966": "Asia/Riyadh",
    "+974": "Asia/Qatar",
    "+965": "Asia/Kuwait",
    "+973": "Asia/Bahrain",
    "+968": "Asia/Muscat",
    "+964": "Asia/Baghdad",
    "+963": "Asia/Damascus",
    "+962": "Asia/Amman",
    "+961": "Asia/Beirut",
    "+967": "Asia/Aden",
    "+20": "Africa/Cairo",
    "+212": "Africa/Casablanca",
    "+213": "Africa/Algiers",
    "+216": "Africa/Tunis",
    "+218": "Africa/Tripoli",
    "+249": "Africa/Khartoum",
    "+92": "Asia/Karachi",
    "+91": "Asia/Kolkata",
    "+44": "Europe/London",
    "+49": "Europe/Berlin",
    "+33": "Europe/Paris",
    "+46": "Europe/Stockholm",
    "+31": "Europe/Amsterdam",
}


class QuietHoursError(ValueError):
    """The quiet_hours block is wrong; the message names the field."""


@dataclass(frozen=True)
class QuietHours:
    """A nightly window (start to end, local time, may cross midnight) on some channels."""

    start: time
    end: time
    default_zone: ZoneInfo
    channels: frozenset[str]
    zones: Mapping[str, ZoneInfo] = field(default_factory=dict)  # calling code -> zone

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> QuietHours | None:
        """The `quiet_hours:` block of gateway.yaml (None when absent or `enabled: false`)."""
        if not spec or spec.get("enabled", True) is False:
            return None
        start, end = _clock_time(spec, "start"), _clock_time(spec, "end")
        if start == end:
            raise QuietHoursError("quiet_hours: start and end are the same time")
        zones = {code: _zone(name, f"zones.{code}") for code, name in ZONES_BY_CALLING_CODE.items()}
        for code, name in dict(spec.get("zones") or {}).items():
            if not isinstance(code, str) or not code.startswith("+") or not code[1:].isdigit():
                raise QuietHoursError(f"quiet_hours.zones: {code!r} is not a calling code like +98")
            zones[code] = _zone(name, f"zones.{code}")
        channels = spec.get("channels", ["sms"])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise QuietHoursError("quiet_hours.channels must be a list of channel names")
        return cls(
            start=start,
            end=end,
            default_zone=_zone(spec.get("timezone", "UTC"), "timezone"),
            channels=frozenset(channels),
            zones=zones,
        )

    def unknown_zone(self, channel: str, context: Mapping[str, str]) -> str | None:
        """Why an invitation's context `timezone` cannot be used on `channel` (a name that is no
        time zone), or None. Only where quiet hours apply: elsewhere it is just context."""
        named = context.get("timezone")
        if channel not in self.channels or not named:
            return None
        try:
            ZoneInfo(str(named))
        except (ZoneInfoNotFoundError, ValueError):
            return (
                f"context.timezone: {str(named)[:64]!r} is not a time zone"
                " (an IANA name such as Asia/Tehran or Europe/London)"
            )
        return None

    def zone_for(self, address: str, context: Mapping[str, str]) -> ZoneInfo:
        """The respondent's zone: context `timezone`, else the phone number's country."""
        named = context.get("timezone")
        if named:
            try:
                return ZoneInfo(named)
            except (ZoneInfoNotFoundError, ValueError):
                pass  # refused on invitations (unknown_zone); an older session's: fall through
        if address.startswith("tel:+") or address.startswith("whatsapp:+"):
            number = "+" + address.partition("+")[2]
            for code in sorted(self.zones, key=len, reverse=True):
                if number.startswith(code):
                    return self.zones[code]
        return self.default_zone

    def allowed_from(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """`moment` if it is outside the window in `zone`, else the window's end (aware UTC)."""
        local = moment.astimezone(zone)
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:  # e.g. 13:00-15:00 within one day
            quiet = self.start <= now < self.end
            end_day = local.date()
        else:  # e.g. 21:00-08:00 across midnight
            quiet = now >= self.start or now < self.end
            end_day = local.date() + timedelta(days=1) if now >= self.start else local.date()
        if not quiet:
            return moment
        return _reached(datetime.combine(end_day, self.end), zone, moment).astimezone(moment.tzinfo)


def _reached(wall: datetime, zone: ZoneInfo, after: datetime) -> datetime:
    """The first moment after `after` when the clocks in `zone` read `wall` (naive) or later.

    Around a change of clocks a wall time may come twice (autumn: the later pass when the
    earlier is past) or never (spring: the moment the clocks jump past it).
    """
    passes = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == wall:
            passes.append(moment)
    if passes:
        return min((m for m in passes if m > after), default=after)
    # Skipped: the two offsets put `wall` either side of the jump; find the jump (whole seconds).
    low, high = sorted(int(wall.replace(tzinfo=zone, fold=f).timestamp()) for f in (0, 1))
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return max(datetime.fromtimestamp(high, UTC), after)


def _clock_time(spec: Mapping[str, Any], key: str) -> time:
    value = spec.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise QuietHoursError(
            f"quiet_hours.{key} must be a time like 21:00, not {value!r}"
        ) from None


def _zone(name: object, where: str) -> ZoneInfo:
    try:
        if not isinstance(name, str):
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QuietHoursError(
            f"quiet_hours.{where}: {name!r} is not a time zone name such as Asia/Tehran"
        ) from None
