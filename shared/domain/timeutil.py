"""The API's timestamp form (UTC, milliseconds, `Z`) and the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# What the app and the worker ask for the time: UTC-aware `now`. Tests pass their own.
Clock = Callable[[], datetime]

# The instants the API accepts, from EARLIEST (included) to LATEST (excluded). Far from
# the ends of Python's datetime (years 1 to 9999) and of what psycopg reads back (no BC
# dates): adding a buffer, a duration or a booking window to one, or viewing it in any
# time zone, cannot overflow, and every instant stored renders and reads back. A fixed
# range rather than "now ± N years": the same request is valid on any day, and the
# request models have no clock.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def in_supported_range(moment: datetime) -> bool:
    return EARLIEST <= moment < LATEST


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    # isoformat is several times faster than strftime; availability renders ~1,000 a call.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def utcnow() -> datetime:
    return datetime.now(UTC)
