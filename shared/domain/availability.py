"""Pure booking rules shared by the availability endpoint and the booking-time check.

Nothing here does I/O: callers load an artist's working hours, leaves and live bookings
(see :func:`busy_window` for how wide that query must be) and pass them in, so the API's
listing and the booking path cannot drift apart — both go through the same helpers.

Time model
----------
* Every ``datetime`` argument must be timezone-aware (any zone; values are compared as
  instants). A naive one raises ``ValueError`` because guessing its zone silently shifts
  bookings by hours.
* Returned datetimes are in UTC (``tzinfo=datetime.UTC``, i.e. ``timezone.utc``).
* Working hours are wall-clock times in the artist's IANA zone and follow daylight saving:
  a 10:00-18:00 day stays 10:00-18:00 local on the day the clocks change, so it may last
  7, 8 or 9 real hours. A local time is turned into an instant like this:

  - a **nonexistent** time (in the spring-forward gap, e.g. 02:30 in Europe/Paris on
    2026-03-29) resolves to the first instant after the gap (03:00 local = 01:00Z);
  - a **repeated** time (fall-back, e.g. 02:30 in Europe/Paris on 2026-10-25 happens
    twice) resolves to its first occurrence (``fold=0``, 00:30Z);
  - ``end == time(0, 0)`` means midnight at the end of the day (24:00);
  - an interval whose resolved end is not after its resolved start is skipped (e.g.
    02:00-02:30 on a spring-forward day, or an end before the start).
* ``max_advance_days`` counts absolute 24-hour days from ``now``, not calendar days.
"""

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Self
from zoneinfo import ZoneInfo

__all__ = [
    "BookingPolicy",
    "Interval",
    "Slot",
    "SlotReason",
    "WorkingHours",
    "busy_window",
    "check_slot",
    "list_slots",
    "stable_until",
    "working_intervals",
]

_MIDNIGHT = time(0, 0)
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
_ZERO = timedelta(0)


class SlotReason(StrEnum):
    """Why a slot cannot be booked; values are the API's ``details.reason`` strings."""

    OUTSIDE_WORKING_HOURS = "OUTSIDE_WORKING_HOURS"
    ON_LEAVE = "ON_LEAVE"
    ALREADY_BOOKED = "ALREADY_BOOKED"
    IN_PAST = "IN_PAST"
    TOO_SOON = "TOO_SOON"
    TOO_FAR = "TOO_FAR"


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """A recurring wall-clock interval in the artist's zone.

    ``day_of_week`` is 0 for Monday. ``start``/``end`` are naive times; ``end`` must be
    after ``start`` except ``time(0, 0)``, which means 24:00 (end of that day).
    """

    day_of_week: int
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Interval:
    """Half-open ``[start, end)`` between aware datetimes (any zone)."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class BookingPolicy:
    """Artist-level booking rules, all in minutes except ``max_advance_days``."""

    buffer_min: int = 0
    min_notice_min: int = 0
    max_advance_days: int = 365


@dataclass(frozen=True, slots=True)
class Slot:
    """One candidate slot; ``reason`` is ``None`` exactly when ``available`` is true."""

    start: datetime
    end: datetime
    available: bool
    reason: SlotReason | None


# --------------------------------------------------------------------------- validation


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _positive(value: timedelta, name: str) -> None:
    # A zero step would never advance the slot grid; a zero duration is not a booking.
    if value <= _ZERO:
        raise ValueError(f"{name} must be positive, got {value!r}")


def _check_policy(policy: BookingPolicy) -> None:
    # Negative values would shrink bookings or move the window before ``now``.
    if min(policy.buffer_min, policy.min_notice_min, policy.max_advance_days) < 0:
        raise ValueError(f"BookingPolicy values must not be negative: {policy!r}")


def _check_hours(hours: Sequence[WorkingHours]) -> None:
    for wh in hours:
        if not 0 <= wh.day_of_week <= 6:
            raise ValueError(f"day_of_week must be 0 (Monday) to 6, got {wh.day_of_week}")
        # An aware time has no meaning on a DST day: hours are the artist's wall clock.
        if wh.start.tzinfo is not None or wh.end.tzinfo is not None:
            raise ValueError("WorkingHours times must be naive wall-clock times")


# ------------------------------------------------------------------------ working hours


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _resolve_local(naive: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time (rules in the module docstring)."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == naive:
        # Exists; for a repeated time fold=0 already is the first occurrence.
        return first
    # In a gap fold=0 applies the pre-transition offset (an instant after the transition)
    # and fold=1 the post-transition one (before it). zoneinfo does not expose the
    # transition itself, so bisect for it on whole seconds, which is what tzdata uses.
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC).replace(microsecond=0)
    hi = first.replace(microsecond=0) + (_ONE_SECOND if first.microsecond else _ZERO)
    lo_s, hi_s = 0, int((hi - lo).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(lo + timedelta(seconds=mid), tz) >= naive:
            hi_s = mid
        else:
            lo_s = mid
    return lo + timedelta(seconds=hi_s)


def _local_day_intervals(
    tz: ZoneInfo, day: date, hours: Iterable[WorkingHours]
) -> Iterable[Interval]:
    for wh in hours:
        start = _resolve_local(datetime.combine(day, wh.start), tz)
        if wh.end == _MIDNIGHT:
            end_naive = datetime.combine(day + _ONE_DAY, _MIDNIGHT)
        else:
            end_naive = datetime.combine(day, wh.end)
        end = _resolve_local(end_naive, tz)
        if end > start:
            yield Interval(start, end)


def working_intervals(
    tz: ZoneInfo, hours: Sequence[WorkingHours], start: datetime, end: datetime
) -> list[Interval]:
    """UTC intervals of every working interval on every local date that can touch
    ``[start, end)``, sorted by start (then end); exact duplicates are dropped.

    One extra local day is included on each side so that callers never miss an
    interval because of zone offsets; callers filter. Each interval is converted once,
    which keeps zoneinfo work proportional to days, not slots.
    """
    start_utc, end_utc = _utc(start, "start"), _utc(end, "end")
    _check_hours(hours)
    by_weekday: dict[int, list[WorkingHours]] = {}
    for wh in hours:
        by_weekday.setdefault(wh.day_of_week, []).append(wh)
    # min/max make an inverted range harmless instead of silently returning nothing.
    local_dates = (start_utc.astimezone(tz).date(), end_utc.astimezone(tz).date())
    day = min(local_dates) - _ONE_DAY
    last = max(local_dates) + _ONE_DAY
    found: set[Interval] = set()
    while day <= last:
        found.update(_local_day_intervals(tz, day, by_weekday.get(day.weekday(), ())))
        day += _ONE_DAY
    return sorted(found, key=lambda iv: (iv.start, iv.end))


# ------------------------------------------------------------------------- busy lookups


class _Busy:
    """Busy intervals merged once into disjoint sorted runs, so an overlap query is one
    bisect instead of a scan over every booking."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, intervals: Iterable[Interval], pad: timedelta, name: str) -> None:
        spans: list[tuple[datetime, datetime]] = []
        for iv in intervals:
            start, end = _utc(iv.start, f"{name}.start"), _utc(iv.end, f"{name}.end")
            if end < start:
                raise ValueError(f"{name} ends before it starts: {iv!r}")
            start, end = start - pad, end + pad
            # An empty half-open interval contains no instant, so it cannot collide.
            if end > start:
                spans.append((start, end))
        spans.sort()
        self._starts: list[datetime] = []
        self._ends: list[datetime] = []
        for start, end in spans:
            # Touching runs are merged too: their union overlaps exactly what they do.
            if self._ends and start <= self._ends[-1]:
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        # Runs are disjoint and sorted, so the only candidate is the first that ends
        # after ``start``; ends equal to ``start`` are back-to-back, not overlapping.
        i = bisect_right(self._ends, start)
        return i < len(self._starts) and self._starts[i] < end


@dataclass(frozen=True, slots=True)
class _Rules:
    now: datetime
    earliest: datetime
    latest: datetime
    leaves: _Busy
    bookings: _Busy

    @classmethod
    def build(
        cls,
        policy: BookingPolicy,
        now: datetime,
        leaves: Sequence[Interval],
        bookings: Sequence[Interval],
    ) -> Self:
        _check_policy(policy)
        now_utc = _utc(now, "now")
        return cls(
            now=now_utc,
            earliest=now_utc + timedelta(minutes=policy.min_notice_min),
            latest=now_utc + timedelta(days=policy.max_advance_days),
            leaves=_Busy(leaves, _ZERO, "leave"),
            bookings=_Busy(bookings, timedelta(minutes=policy.buffer_min), "booking"),
        )

    def time_reason(self, start: datetime) -> SlotReason | None:
        if start < self.now:
            return SlotReason.IN_PAST
        if start < self.earliest:
            return SlotReason.TOO_SOON
        if start > self.latest:
            return SlotReason.TOO_FAR
        return None

    def busy_reason(self, start: datetime, end: datetime) -> SlotReason | None:
        if self.leaves.overlaps(start, end):
            return SlotReason.ON_LEAVE
        if self.bookings.overlaps(start, end):
            return SlotReason.ALREADY_BOOKED
        return None


# ------------------------------------------------------------------------------ public


def list_slots(
    *,
    tz: ZoneInfo,
    hours: Sequence[WorkingHours],
    leaves: Sequence[Interval],
    bookings: Sequence[Interval],
    policy: BookingPolicy,
    duration: timedelta,
    step: timedelta,
    range_start: datetime,
    range_end: datetime,
    now: datetime,
) -> list[Slot]:
    """Availability answer: every candidate slot starting in ``[range_start, range_end)``.

    Candidates start at each working interval's start and every ``step`` after it
    (absolute time), and must end inside that same interval. Slots are sorted by start;
    if overlapping working intervals yield the same start it is listed once (same start
    and duration give the same answer). Reasons follow :func:`check_slot`'s precedence;
    OUTSIDE_WORKING_HOURS never applies here by construction.

    ``bookings`` must already be only the live ones (CONFIRMED, or PENDING_PAYMENT whose
    hold has not expired); they are widened by ``buffer_min``, leaves are not.
    Cost is O((slots + busy) log busy) with one zone conversion per working interval.
    """
    start_utc, end_utc = _utc(range_start, "range_start"), _utc(range_end, "range_end")
    _positive(duration, "duration")
    _positive(step, "step")
    rules = _Rules.build(policy, now, leaves, bookings)
    if end_utc <= start_utc:
        return []
    slots: dict[datetime, Slot] = {}
    for iv in working_intervals(tz, hours, start_utc, end_utc):
        # Jump straight to the first grid point inside the range rather than walking up
        # to it; -(-a // b) is ceiling division on timedeltas.
        skip = max(0, -((iv.start - start_utc) // step))
        slot_start = iv.start + skip * step
        last_fit = iv.end - duration
        while slot_start <= last_fit and slot_start < end_utc:
            if slot_start not in slots:
                slot_end = slot_start + duration
                reason = rules.time_reason(slot_start)
                if reason is None:
                    reason = rules.busy_reason(slot_start, slot_end)
                slots[slot_start] = Slot(slot_start, slot_end, reason is None, reason)
            slot_start += step
    return [slots[key] for key in sorted(slots)]


def check_slot(
    *,
    tz: ZoneInfo,
    hours: Sequence[WorkingHours],
    leaves: Sequence[Interval],
    bookings: Sequence[Interval],
    policy: BookingPolicy,
    start: datetime,
    duration: timedelta,
    now: datetime,
) -> SlotReason | None:
    """Booking-time check of one requested slot: ``None`` when bookable, else the first
    failing reason in this order: IN_PAST, TOO_SOON, TOO_FAR, OUTSIDE_WORKING_HOURS,
    ON_LEAVE, ALREADY_BOOKED.

    Any start is accepted if ``[start, start + duration)`` lies entirely inside one
    working interval; it need not be on the listing grid. Two adjacent intervals (e.g.
    10:00-13:00 and 13:00-18:00) are separate, so a slot spanning 13:00 is outside.
    """
    start_utc = _utc(start, "start")
    _positive(duration, "duration")
    rules = _Rules.build(policy, now, leaves, bookings)
    end_utc = start_utc + duration
    reason = rules.time_reason(start_utc)
    if reason is not None:
        return reason
    inside = any(
        iv.start <= start_utc and end_utc <= iv.end
        for iv in working_intervals(tz, hours, start_utc, end_utc)
    )
    if not inside:
        return SlotReason.OUTSIDE_WORKING_HOURS
    return rules.busy_reason(start_utc, end_utc)


def stable_until(
    slots: Sequence[Slot],
    *,
    policy: BookingPolicy,
    now: datetime,
    hold_expiries: Iterable[datetime] = (),
) -> datetime:
    """The first instant after ``now`` at which the same inputs could give another
    answer: a slot crossing the booking window, the minimum notice or ``now`` itself, or
    an unpaid hold that stops blocking. Before it, a cached answer is exactly what
    :func:`list_slots` would return (the data themselves are versioned by the caller).
    """
    now_utc = _utc(now, "now")
    notice = timedelta(minutes=policy.min_notice_min)
    advance = timedelta(days=policy.max_advance_days)
    until = datetime.max.replace(tzinfo=UTC)
    for expiry in hold_expiries:
        moment = _utc(expiry, "hold expiry")
        if now_utc < moment < until:
            until = moment
    for slot in slots:
        for moment in (slot.start - advance, slot.start - notice, slot.start):
            if now_utc < moment < until:
                until = moment
    return until


def busy_window(start: datetime, end: datetime, policy: BookingPolicy) -> Interval:
    """The window ``[start - buffer, end + buffer)`` (UTC) in which bookings and leaves
    must be loaded to decide slots lying within ``[start, end)``.

    ``end`` bounds slot *ends*: for a listing pass ``range_end + duration``, for one
    booking ``start + duration``. Load every booking/leave that overlaps the window
    (``row.start < window.end and row.end > window.start``); leaves are not widened, so
    the buffer merely over-fetches a few of them, which is harmless.
    """
    _check_policy(policy)
    buffer = timedelta(minutes=policy.buffer_min)
    return Interval(_utc(start, "start") - buffer, _utc(end, "end") + buffer)
