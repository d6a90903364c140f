"""When a client is reminded of a booking: `reminderHours` before its start.

Pure: no I/O; `now` is an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.timeutil import iso_utc
from shared.domain.transitions import BookingStatus


def remind_at(start: datetime, reminder_hours: int, now: datetime) -> datetime | None:
    """The moment of the reminder of a booking confirmed (or moved) at `now`, or None when
    reminders are off (0 hours) or the moment has already passed: a booking made less than
    `reminder_hours` ahead was just confirmed to the client, a reminder would repeat it."""
    if reminder_hours <= 0:
        return None
    moment = start - timedelta(hours=reminder_hours)
    return moment if moment > now else None


def occasion(start: datetime) -> str:
    """The outbox occasion of a reminder: the start instant it is about (UTC, ISO 8601), so
    there is one reminder per booking and start time, and a moved booking gets a new one."""
    text = iso_utc(start)
    assert text is not None
    return text


def still_applies(status: str, start: datetime, reminder_occasion: str, now: datetime) -> bool:
    """Is a reminder (queued for the start `reminder_occasion`) still worth sending? Only
    while the booking is CONFIRMED at that very start, and that start is ahead: a booking
    cancelled, or moved, after its reminder was queued gets nothing about the old time."""
    return (
        status == BookingStatus.CONFIRMED and occasion(start) == reminder_occasion and start > now
    )
