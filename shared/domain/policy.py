"""An artist's deposit policy: what a client may still do with a booking, and when.

Pure functions over plain values; callers pass `now`. Tattoo practice, which the
defaults follow: the deposit secures the slot and counts toward the price; it is kept
when the client cancels late or does not come; a client may move a booking a limited
number of times with enough notice, and the deposit moves with it.

Time model: every notice period counts **elapsed hours** between two instants, not
wall-clock hours. On the days clocks change, "48 hours before a 10:00 appointment" is
therefore 09:00 or 11:00 local two days earlier — what a client can check with a
stopwatch, and the same whatever the server's or the client's time zone. "At least N
hours before" includes exactly N hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

__all__ = [
    "DEFAULT_POLICY",
    "DepositPolicy",
    "PolicyReason",
    "cancel_refusal",
    "close_refusal",
    "new_booking_refusal",
    "refund_on_client_cancel",
    "reminder_at",
    "reschedule_refusal",
]


class PolicyReason(StrEnum):
    """Why the policy refuses an action; values are the API's `details.reason` strings."""

    TOO_LATE_TO_RESCHEDULE = "TOO_LATE_TO_RESCHEDULE"
    RESCHEDULE_LIMIT = "RESCHEDULE_LIMIT"
    NO_SHOW_LIMIT = "NO_SHOW_LIMIT"
    STARTED = "STARTED"
    NOT_STARTED = "NOT_STARTED"


@dataclass(frozen=True, slots=True)
class DepositPolicy:
    # None: a client who cancels never gets the deposit back; N: in full when cancelling
    # at least N hours before the start.
    refund_window_hours: int | None = None
    reschedule_notice_hours: int = 48
    max_reschedules: int = 1
    # 0 turns reminders off.
    reminder_hours: int = 24
    # 0 turns the limit off.
    no_show_limit: int = 0

    def __post_init__(self) -> None:
        for name in ("reschedule_notice_hours", "max_reschedules", "reminder_hours"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.no_show_limit < 0:
            raise ValueError("no_show_limit must not be negative")
        if self.refund_window_hours is not None and self.refund_window_hours < 0:
            raise ValueError("refund_window_hours must not be negative")


DEFAULT_POLICY = DepositPolicy()


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    # In UTC before any arithmetic: Python subtracts two datetimes that share a tzinfo
    # as wall-clock times, which is off by the DST change in between.
    return value.astimezone(UTC)


def _notice(start: datetime, now: datetime) -> timedelta:
    return _utc(start, "start") - _utc(now, "now")


def cancel_refusal(*, start: datetime, now: datetime) -> PolicyReason | None:
    """A client may cancel a confirmed booking until it starts."""
    return PolicyReason.STARTED if _notice(start, now) <= timedelta(0) else None


def refund_on_client_cancel(policy: DepositPolicy, *, start: datetime, now: datetime) -> bool:
    """True when a client cancelling now gets the deposit back in full (else forfeited)."""
    if policy.refund_window_hours is None:
        return False
    notice = _notice(start, now)
    return notice > timedelta(0) and notice >= timedelta(hours=policy.refund_window_hours)


def reschedule_refusal(
    policy: DepositPolicy, *, start: datetime, now: datetime, reschedule_count: int
) -> PolicyReason | None:
    """May the client move a booking that starts at `start` and was moved
    `reschedule_count` times? The limit is checked first: it never lifts, while the
    notice depends on the moment of asking."""
    if reschedule_count >= policy.max_reschedules:
        return PolicyReason.RESCHEDULE_LIMIT
    notice = _notice(start, now)
    if notice <= timedelta(0) or notice < timedelta(hours=policy.reschedule_notice_hours):
        return PolicyReason.TOO_LATE_TO_RESCHEDULE
    return None


def close_refusal(*, start: datetime, now: datetime) -> PolicyReason | None:
    """A booking is marked completed or no-show only once its start has passed."""
    return PolicyReason.NOT_STARTED if _notice(start, now) > timedelta(0) else None


def new_booking_refusal(policy: DepositPolicy, *, no_shows: int) -> PolicyReason | None:
    """A client with `no_shows` NO_SHOW bookings with this artist may book again?"""
    if policy.no_show_limit > 0 and no_shows >= policy.no_show_limit:
        return PolicyReason.NO_SHOW_LIMIT
    return None


def reminder_at(policy: DepositPolicy, *, start: datetime) -> datetime | None:
    """When to remind the client of a booking starting at `start` (None: never)."""
    if policy.reminder_hours <= 0:
        return None
    return _utc(start, "start") - timedelta(hours=policy.reminder_hours)
