"""When a backup schedule is due. Pure: times are epoch seconds; `at` is the server's local time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

DAY = 86400.0


def _slots_before(schedule: Mapping[str, Any], now: float, tz_offset: float) -> float | None:
    """The latest scheduled moment at or before `now` (for `at` schedules)."""
    hours, minutes = (int(x) for x in str(schedule["at"]).split(":"))
    local_now = now + tz_offset
    day_start = local_now - (local_now % DAY)
    weekdays = set(schedule.get("weekdays") or range(7))
    for back in range(0, 8):
        start = day_start - back * DAY
        weekday = time.gmtime(start).tm_wday
        slot = start + hours * 3600 + minutes * 60
        if weekday in weekdays and slot <= local_now:
            return slot - tz_offset
    return None


def due(schedule: Mapping[str, Any], last_run: float | None, now: float, tz_offset: float = 0.0) -> bool:
    """True when a run is due: never ran, or a scheduled moment passed since the last run (a run
    missed while the server was down is due at start)."""
    if not schedule.get("enabled", True):
        return False
    if schedule.get("every_hours"):
        return last_run is None or now - last_run >= float(schedule["every_hours"]) * 3600
    if schedule.get("at"):
        slot = _slots_before(schedule, now, tz_offset)
        if slot is None:
            return False
        return last_run is None or last_run < slot
    return False


def local_offset() -> float:
    """Seconds east of UTC of this server's local time now."""
    return float(-time.altzone if time.localtime().tm_isdst > 0 else -time.timezone)
