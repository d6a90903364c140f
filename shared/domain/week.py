"""The dashboard's week: Monday to Sunday in the artist's time zone, and the instants
that bound it. A week across a DST change is 167 or 169 hours long: the bounds are local
midnights converted one by one, never "Monday + 7 × 24 h"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Week:
    monday: date
    timezone: str

    @property
    def days(self) -> tuple[date, ...]:
        return tuple(self.monday + timedelta(days=n) for n in range(7))

    @property
    def previous(self) -> date:
        return self.monday - timedelta(days=7)

    @property
    def next(self) -> date:
        return self.monday + timedelta(days=7)

    @property
    def start(self) -> datetime:
        """Monday 00:00 local, in UTC."""
        return local_midnight(self.monday, self.timezone)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 local, in UTC (excluded)."""
        return local_midnight(self.next, self.timezone)


def local_midnight(day: date, timezone: str) -> datetime:
    """The first instant of `day` in `timezone`, in UTC. Where midnight itself is skipped
    (a DST change at 00:00), the wall clock's 00:00 maps to the instant after the gap."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def week_of(day: date, timezone: str) -> Week:
    """The week (Monday first) that holds `day`."""
    return Week(day - timedelta(days=day.weekday()), timezone)


def today_in(now: datetime, timezone: str) -> date:
    """The artist's date at `now`."""
    if now.tzinfo is None:
        raise ValueError("naive datetime")
    return now.astimezone(ZoneInfo(timezone)).date()
