"""The API's timestamp form (UTC, milliseconds, `Z`) and the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# What the app and the worker ask for the time: UTC-aware `now`. Tests pass their own.
Clock = Callable[[], datetime]


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    # isoformat is several times faster than strftime; availability renders ~1,000 a call.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def utcnow() -> datetime:
    return datetime.now(UTC)
