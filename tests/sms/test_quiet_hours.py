"""When quiet hours release a message, as local wall clocks in Tehran, Riyadh and Berlin read.

A table: the window, the moment a message is due (local time; `fold=1` is the second pass of
a repeated hour) and when it may go out, or None when at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.quiet import QuietHours

TEHRAN, RIYADH, BERLIN = ZoneInfo("Asia/Tehran"), ZoneInfo("Asia/Riyadh"), ZoneInfo("Europe/Berlin")


def at(zone: ZoneInfo, month: int, day: int, hour: int, minute: int = 0, fold: int = 0) -> datetime:
    """A local wall-clock moment in 2026."""
    return datetime(2026, month, day, hour, minute, fold=fold, tzinfo=zone)


CASES = [
    # Tehran: UTC+03:30 all year since 2022 (no summer time); Riyadh: UTC+03:00.
    ("tehran in the evening", "21:00-08:00", at(TEHRAN, 7, 1, 22), at(TEHRAN, 7, 2, 8)),
    ("tehran after midnight", "21:00-08:00", at(TEHRAN, 7, 2, 3), at(TEHRAN, 7, 2, 8)),
    ("tehran at the end", "21:00-08:00", at(TEHRAN, 7, 2, 8), None),
    ("tehran a minute before", "21:00-08:00", at(TEHRAN, 7, 2, 20, 59), None),
    ("riyadh in the evening", "22:00-07:30", at(RIYADH, 3, 20, 23, 15), at(RIYADH, 3, 21, 7, 30)),
    ("a window within one day", "13:00-15:00", at(RIYADH, 3, 20, 14), at(RIYADH, 3, 20, 15)),
    ("after a daytime window", "13:00-15:00", at(RIYADH, 3, 20, 15), None),
    # Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST.
    ("berlin before spring", "21:00-09:00", at(BERLIN, 3, 28, 21), at(BERLIN, 3, 29, 9)),
    ("berlin after the jump", "21:00-09:00", at(BERLIN, 3, 29, 3), at(BERLIN, 3, 29, 9)),
    # A window ending in the skipped hour ends when the clocks jump past it (03:00 CEST).
    ("end in the skipped hour", "22:00-02:30", at(BERLIN, 3, 29, 1), at(BERLIN, 3, 29, 3)),
    ("start in the skipped hour", "02:30-06:00", at(BERLIN, 3, 29, 3, 10), at(BERLIN, 3, 29, 6)),
    # Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:00-02:59 comes twice.
    ("berlin repeated hour", "21:00-09:00", at(BERLIN, 10, 25, 2, 30), at(BERLIN, 10, 25, 9)),
    ("berlin repeated, again", "21:00-09:00", at(BERLIN, 10, 25, 2, 30, 1), at(BERLIN, 10, 25, 9)),
    # A window ending in the repeated hour: on the second pass the wall clock is inside it
    # again, and it ends at the second 02:30, never at a moment already past.
    ("end, first pass", "22:00-02:30", at(BERLIN, 10, 25, 2, 15), at(BERLIN, 10, 25, 2, 30)),
    ("end, second pass", "22:00-02:30", at(BERLIN, 10, 25, 2, 15, 1), at(BERLIN, 10, 25, 2, 30, 1)),
    ("between the passes", "22:00-02:30", at(BERLIN, 10, 25, 2, 45), None),
]


@pytest.mark.parametrize(
    ("window", "due", "release"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_message_due_in_the_window_goes_at_its_end(
    window: str, due: datetime, release: datetime | None
) -> None:
    start, end = window.split("-")
    quiet = QuietHours.from_config({"start": start, "end": end})
    assert quiet is not None
    moment = due.astimezone(UTC)
    allowed = quiet.allowed_from(moment, due.tzinfo)  # type: ignore[arg-type]
    assert allowed.tzinfo is UTC
    if release is None:
        assert allowed == moment
    else:
        assert allowed > moment
        assert allowed == release.astimezone(UTC), allowed.astimezone(due.tzinfo).isoformat()


def test_the_time_zone_data_knows_that_tehran_keeps_one_offset_all_year() -> None:
    """Iran dropped summer time in 2022: time zone data older than 2022b moves Tehran to
    UTC+04:30 from March to September, and quiet hours an hour early with it."""
    for month in (1, 4, 7, 10):
        assert at(TEHRAN, month, 15, 12).utcoffset() == at(TEHRAN, 1, 1, 0).utcoffset()
        assert str(at(TEHRAN, month, 15, 12).utcoffset()) == "3:30:00"
    assert str(at(RIYADH, 7, 15, 12).utcoffset()) == "3:00:00"
