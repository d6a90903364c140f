"""Unit tests for the pure booking rules in shared.domain.availability (no DB, no I/O)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.availability import (
    BookingPolicy,
    Interval,
    Slot,
    SlotReason,
    WorkingHours,
    busy_window,
    check_slot,
    list_slots,
    stable_until,
    working_intervals,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")
UTC_ZONE = ZoneInfo("UTC")

# Far enough back that no listed slot is past, soon or too far unless a case says so.
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
OPEN_POLICY = BookingPolicy(max_advance_days=100_000)

MONDAY = date(2026, 6, 1)
PARIS_SPRING = date(2026, 3, 29)  # 02:00 CET -> 03:00 CEST
PARIS_FALL = date(2026, 10, 25)  # 03:00 CEST -> 02:00 CET
NY_SPRING = date(2026, 3, 8)  # 02:00 EST -> 03:00 EDT
NY_FALL = date(2026, 11, 1)  # 02:00 EDT -> 01:00 EST
LH_SPRING = date(2026, 10, 4)  # 02:00 -> 02:30 (half-hour shift)

MIN = timedelta(minutes=1)


def z(text: str) -> datetime:
    """UTC instant from ISO text without the trailing Z, for compact tables."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(day: date, hhmm: str, tz: ZoneInfo, fold: int = 0) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm)).replace(tzinfo=tz, fold=fold)


def on(day: date, start: str, end: str) -> WorkingHours:
    return WorkingHours(day.weekday(), time.fromisoformat(start), time.fromisoformat(end))


def grid(first: str, step_min: int, count: int) -> list[datetime]:
    return [z(first) + i * timedelta(minutes=step_min) for i in range(count)]


def around(day: date) -> tuple[datetime, datetime]:
    """A UTC range covering the whole local ``day`` in every zone used here, while
    hours defined for that weekday only cannot leak in from neighbouring weeks."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start - timedelta(hours=18), start + timedelta(hours=42)


# ------------------------------------------------------------------ grid / DST listing


@dataclass(frozen=True)
class GridCase:
    tz: ZoneInfo
    day: date
    hours: Sequence[tuple[str, str]]
    duration_min: int
    step_min: int
    expected: Sequence[datetime]


GRID_CASES = {
    "simple_day_utc_15_slots": GridCase(
        UTC_ZONE, MONDAY, [("10:00", "18:00")], 60, 30, grid("2026-06-01T10:00", 30, 15)
    ),
    "simple_day_paris_summer": GridCase(
        PARIS, MONDAY, [("10:00", "18:00")], 60, 30, grid("2026-06-01T08:00", 30, 15)
    ),
    "multiple_intervals_per_day": GridCase(
        UTC_ZONE,
        MONDAY,
        [("14:00", "18:00"), ("10:00", "13:00")],
        60,
        30,
        grid("2026-06-01T10:00", 30, 5) + grid("2026-06-01T14:00", 30, 7),
    ),
    "step_longer_than_duration": GridCase(
        UTC_ZONE, MONDAY, [("10:00", "12:00")], 30, 45, grid("2026-06-01T10:00", 45, 3)
    ),
    "duration_longer_than_interval": GridCase(UTC_ZONE, MONDAY, [("10:00", "10:45")], 60, 15, []),
    "midnight_end_means_24h": GridCase(
        UTC_ZONE, MONDAY, [("22:00", "00:00")], 60, 30, grid("2026-06-01T22:00", 30, 3)
    ),
    "overlapping_intervals_list_a_start_once": GridCase(
        UTC_ZONE,
        MONDAY,
        [("10:00", "12:00"), ("11:00", "13:00")],
        60,
        60,
        grid("2026-06-01T10:00", 60, 3),
    ),
    "paris_day_before_spring_forward": GridCase(
        PARIS, date(2026, 3, 28), [("10:00", "18:00")], 60, 30, grid("2026-03-28T09:00", 30, 15)
    ),
    "paris_spring_forward_day_keeps_local_hours": GridCase(
        PARIS, PARIS_SPRING, [("10:00", "18:00")], 60, 30, grid("2026-03-29T08:00", 30, 15)
    ),
    "paris_day_before_fall_back": GridCase(
        PARIS, date(2026, 10, 24), [("10:00", "18:00")], 60, 30, grid("2026-10-24T08:00", 30, 15)
    ),
    "paris_fall_back_day_keeps_local_hours": GridCase(
        PARIS, PARIS_FALL, [("10:00", "18:00")], 60, 30, grid("2026-10-25T09:00", 30, 15)
    ),
    "paris_spring_forward_night_is_5_real_hours": GridCase(
        PARIS, PARIS_SPRING, [("00:00", "06:00")], 60, 60, grid("2026-03-28T23:00", 60, 5)
    ),
    "paris_fall_back_night_is_7_real_hours": GridCase(
        PARIS, PARIS_FALL, [("00:00", "06:00")], 60, 60, grid("2026-10-24T22:00", 60, 7)
    ),
    "new_york_day_before_spring_forward": GridCase(
        NEW_YORK, date(2026, 3, 7), [("10:00", "18:00")], 60, 30, grid("2026-03-07T15:00", 30, 15)
    ),
    "new_york_spring_forward_day": GridCase(
        NEW_YORK, NY_SPRING, [("10:00", "18:00")], 60, 30, grid("2026-03-08T14:00", 30, 15)
    ),
    "new_york_day_before_fall_back": GridCase(
        NEW_YORK, date(2026, 10, 31), [("10:00", "18:00")], 60, 30, grid("2026-10-31T14:00", 30, 15)
    ),
    "new_york_fall_back_day": GridCase(
        NEW_YORK, NY_FALL, [("10:00", "18:00")], 60, 30, grid("2026-11-01T15:00", 30, 15)
    ),
    "new_york_fall_back_night_steps_in_real_time": GridCase(
        # 00:00 EDT .. 03:00 EST is 4 real hours; the grid steps through both 01:30s.
        NEW_YORK,
        NY_FALL,
        [("00:00", "03:00")],
        30,
        30,
        grid("2026-11-01T04:00", 30, 8),
    ),
}


@pytest.mark.parametrize("case", GRID_CASES.values(), ids=GRID_CASES.keys())
def test_list_slots_grid(case: GridCase) -> None:
    range_start, range_end = around(case.day)
    slots = list_slots(
        tz=case.tz,
        hours=[on(case.day, start, end) for start, end in case.hours],
        leaves=[],
        bookings=[],
        policy=OPEN_POLICY,
        duration=timedelta(minutes=case.duration_min),
        step=timedelta(minutes=case.step_min),
        range_start=range_start,
        range_end=range_end,
        now=LONG_AGO,
    )
    assert [s.start for s in slots] == list(case.expected)
    for slot in slots:
        assert slot.start.tzinfo is UTC
        assert slot.end.tzinfo is UTC
        assert slot.end - slot.start == timedelta(minutes=case.duration_min)
        assert slot.available
        assert slot.reason is None


# --------------------------------------------------------------- working-hour resolution


@dataclass(frozen=True)
class ResolveCase:
    tz: ZoneInfo
    day: date
    start: str
    end: str
    expected: tuple[str, str] | None  # UTC start/end, None when the interval is skipped
    real_hours: float = 0.0


RESOLVE_CASES = {
    "paris_spring_10_18_is_8h": ResolveCase(
        PARIS, PARIS_SPRING, "10:00", "18:00", ("2026-03-29T08:00", "2026-03-29T16:00"), 8
    ),
    "paris_fall_10_18_is_8h": ResolveCase(
        PARIS, PARIS_FALL, "10:00", "18:00", ("2026-10-25T09:00", "2026-10-25T17:00"), 8
    ),
    "paris_spring_00_06_is_5h": ResolveCase(
        PARIS, PARIS_SPRING, "00:00", "06:00", ("2026-03-28T23:00", "2026-03-29T04:00"), 5
    ),
    "paris_fall_00_06_is_7h": ResolveCase(
        PARIS, PARIS_FALL, "00:00", "06:00", ("2026-10-24T22:00", "2026-10-25T05:00"), 7
    ),
    "paris_nonexistent_start_resolves_after_gap": ResolveCase(
        PARIS, PARIS_SPRING, "02:30", "04:00", ("2026-03-29T01:00", "2026-03-29T02:00"), 1
    ),
    "paris_nonexistent_end_resolves_after_gap": ResolveCase(
        PARIS, PARIS_SPRING, "01:00", "02:30", ("2026-03-29T00:00", "2026-03-29T01:00"), 1
    ),
    "paris_interval_inside_gap_is_skipped": ResolveCase(
        PARIS, PARIS_SPRING, "02:00", "02:45", None
    ),
    "paris_repeated_start_is_first_occurrence": ResolveCase(
        PARIS, PARIS_FALL, "02:30", "04:00", ("2026-10-25T00:30", "2026-10-25T03:00"), 2.5
    ),
    "paris_repeated_end_is_first_occurrence": ResolveCase(
        PARIS, PARIS_FALL, "01:00", "02:30", ("2026-10-24T23:00", "2026-10-25T00:30"), 1.5
    ),
    "paris_full_day_on_spring_forward_is_23h": ResolveCase(
        PARIS, PARIS_SPRING, "00:00", "00:00", ("2026-03-28T23:00", "2026-03-29T22:00"), 23
    ),
    "new_york_spring_00_06_is_5h": ResolveCase(
        NEW_YORK, NY_SPRING, "00:00", "06:00", ("2026-03-08T05:00", "2026-03-08T10:00"), 5
    ),
    "new_york_nonexistent_0230_is_0300_edt": ResolveCase(
        NEW_YORK, NY_SPRING, "02:30", "04:00", ("2026-03-08T07:00", "2026-03-08T08:00"), 1
    ),
    "new_york_fall_00_06_is_7h": ResolveCase(
        NEW_YORK, NY_FALL, "00:00", "06:00", ("2026-11-01T04:00", "2026-11-01T11:00"), 7
    ),
    "new_york_repeated_0130_is_edt": ResolveCase(
        NEW_YORK, NY_FALL, "01:30", "03:00", ("2026-11-01T05:30", "2026-11-01T08:00"), 2.5
    ),
    "lord_howe_half_hour_gap": ResolveCase(
        LORD_HOWE, LH_SPRING, "02:00", "04:00", ("2026-10-03T15:30", "2026-10-03T17:00"), 1.5
    ),
    "kolkata_half_hour_offset": ResolveCase(
        KOLKATA, MONDAY, "10:00", "18:00", ("2026-06-01T04:30", "2026-06-01T12:30"), 8
    ),
    "end_before_start_is_skipped": ResolveCase(UTC_ZONE, MONDAY, "18:00", "10:00", None),
    "empty_interval_is_skipped": ResolveCase(UTC_ZONE, MONDAY, "10:00", "10:00", None),
}


@pytest.mark.parametrize("case", RESOLVE_CASES.values(), ids=RESOLVE_CASES.keys())
def test_working_intervals_resolution(case: ResolveCase) -> None:
    noon = datetime.combine(case.day, time(12), tzinfo=UTC)
    result = working_intervals(case.tz, [on(case.day, case.start, case.end)], noon, noon)
    if case.expected is None:
        assert result == []
        return
    assert result == [Interval(z(case.expected[0]), z(case.expected[1]))]
    assert result[0].end - result[0].start == timedelta(hours=case.real_hours)
    assert result[0].start.tzinfo is UTC


def test_working_intervals_pads_one_local_day_each_side_and_sorts() -> None:
    every_day = [WorkingHours(d, time(14), time(18)) for d in range(7)] + [
        WorkingHours(d, time(9), time(12)) for d in range(7)
    ]
    wednesday = date(2026, 6, 3)
    result = working_intervals(
        PARIS, every_day, local(wednesday, "00:00", PARIS), local(wednesday, "23:59", PARIS)
    )
    assert [iv.start for iv in result] == [
        local(d, hhmm, PARIS)
        for d in (date(2026, 6, 2), wednesday, date(2026, 6, 4))
        for hhmm in ("09:00", "14:00")
    ]


# -------------------------------------------------------------- busy, leaves and notice

CODE = {
    None: ".",
    SlotReason.ALREADY_BOOKED: "B",
    SlotReason.ON_LEAVE: "L",
    SlotReason.IN_PAST: "P",
    SlotReason.TOO_SOON: "S",
    SlotReason.TOO_FAR: "F",
}


def iv(start: str, end: str, tz: ZoneInfo = UTC_ZONE) -> Interval:
    """Interval on MONDAY from local HH:MM strings in ``tz``."""
    return Interval(local(MONDAY, start, tz), local(MONDAY, end, tz))


@dataclass(frozen=True)
class RuleCase:
    expected: str  # one code per slot 10:00, 10:30, ..., 13:00 (60 min each)
    bookings: Sequence[Interval] = ()
    leaves: Sequence[Interval] = ()
    policy: BookingPolicy = OPEN_POLICY
    now: datetime = LONG_AGO


RULE_CASES = {
    "all_free": RuleCase("......."),
    "booking_blocks_overlaps_back_to_back_allowed": RuleCase(
        ".BBB...", bookings=[iv("11:00", "12:00")]
    ),
    "buffer_widens_both_sides": RuleCase(
        "BBBBB..",
        bookings=[iv("11:00", "12:00")],
        policy=BookingPolicy(buffer_min=15, max_advance_days=100_000),
    ),
    "back_to_back_with_buffer_edge": RuleCase(
        ".BBBB..",
        bookings=[iv("11:30", "12:00")],
        policy=BookingPolicy(buffer_min=30, max_advance_days=100_000),
    ),
    "leave_blocks_and_is_not_widened": RuleCase(
        "...LLL.",
        leaves=[iv("12:00", "13:00")],
        policy=BookingPolicy(buffer_min=30, max_advance_days=100_000),
    ),
    "leave_beats_booking": RuleCase(
        ".LLBB..", bookings=[iv("11:00", "12:30")], leaves=[iv("11:00", "11:30")]
    ),
    "booking_in_other_zone_compared_as_instant": RuleCase(
        # 16:30-17:30 IST is 11:00-12:00 UTC.
        ".BBB...",
        bookings=[iv("16:30", "17:30", KOLKATA)],
    ),
    "overlapping_and_touching_bookings_merge": RuleCase(
        ".BBBB..", bookings=[iv("11:45", "12:15"), iv("11:00", "11:45"), iv("12:15", "12:30")]
    ),
    "zero_length_booking_without_buffer_blocks_nothing": RuleCase(
        ".......", bookings=[iv("11:15", "11:15")]
    ),
    "zero_length_booking_with_buffer_blocks_window": RuleCase(
        "..BB...",
        bookings=[iv("11:45", "11:45")],
        policy=BookingPolicy(buffer_min=15, max_advance_days=100_000),
    ),
    "start_equal_now_is_not_past": RuleCase("PP.....", now=z("2026-06-01T11:00")),
    "one_microsecond_after_start_is_past": RuleCase(
        "PPP....", now=z("2026-06-01T11:00") + timedelta.resolution
    ),
    "min_notice_boundary_is_inclusive_for_booking": RuleCase(
        "SS.....", now=z("2026-06-01T10:00"), policy=BookingPolicy(min_notice_min=60)
    ),
    "past_then_too_soon": RuleCase(
        "PSS....", now=z("2026-06-01T10:15"), policy=BookingPolicy(min_notice_min=60)
    ),
    "max_advance_boundary_is_inclusive": RuleCase(
        "...FFFF", now=z("2026-05-31T11:00"), policy=BookingPolicy(max_advance_days=1)
    ),
    "max_advance_zero_days": RuleCase(
        "PP.FFFF", now=z("2026-06-01T11:00"), policy=BookingPolicy(max_advance_days=0)
    ),
    "past_beats_booked_and_soon_beats_leave": RuleCase(
        "PSS.BB.",
        now=z("2026-06-01T10:15"),
        policy=BookingPolicy(min_notice_min=60),
        bookings=[iv("10:00", "10:30"), iv("12:30", "13:00")],
        leaves=[iv("11:00", "11:30")],
    ),
}


@pytest.mark.parametrize("case", RULE_CASES.values(), ids=RULE_CASES.keys())
def test_list_slots_rules(case: RuleCase) -> None:
    slots = list_slots(
        tz=UTC_ZONE,
        hours=[on(MONDAY, "10:00", "14:00")],
        leaves=case.leaves,
        bookings=case.bookings,
        policy=case.policy,
        duration=timedelta(minutes=60),
        step=timedelta(minutes=30),
        range_start=z("2026-06-01T00:00"),
        range_end=z("2026-06-02T00:00"),
        now=case.now,
    )
    assert [s.start for s in slots] == grid("2026-06-01T10:00", 30, 7)
    assert "".join(CODE[s.reason] for s in slots) == case.expected
    assert all(s.available == (s.reason is None) for s in slots)


# ------------------------------------------------------------------------ range filter

RANGE_CASES = {
    "aligned_half_open": ("2026-06-01T10:30", "2026-06-01T12:00", ["10:30", "11:00", "11:30"]),
    "start_between_grid_points": ("2026-06-01T10:40", "2026-06-01T11:30", ["11:00"]),
    "end_just_after_grid_point": (
        "2026-06-01T12:00",
        "2026-06-01T12:00:00.000001",
        ["12:00"],
    ),
    "slot_may_end_after_range": ("2026-06-01T13:00", "2026-06-01T13:01", ["13:00"]),
    "empty_range": ("2026-06-01T11:00", "2026-06-01T11:00", []),
    "inverted_range": ("2026-06-01T12:00", "2026-06-01T11:00", []),
    "range_outside_hours": ("2026-06-01T14:00", "2026-06-01T20:00", []),
}


@pytest.mark.parametrize(
    ("range_start", "range_end", "expected"), RANGE_CASES.values(), ids=RANGE_CASES.keys()
)
def test_list_slots_range_filter(range_start: str, range_end: str, expected: list[str]) -> None:
    slots = list_slots(
        tz=UTC_ZONE,
        hours=[on(MONDAY, "10:00", "14:00")],
        leaves=[],
        bookings=[],
        policy=OPEN_POLICY,
        duration=timedelta(minutes=60),
        step=timedelta(minutes=30),
        range_start=z(range_start),
        range_end=z(range_end),
        now=LONG_AGO,
    )
    assert [s.start for s in slots] == [z(f"2026-06-01T{hhmm}") for hhmm in expected]


# ---------------------------------------------------------------------------- check_slot

SPLIT_DAY = (("10:00", "13:00"), ("14:00", "18:00"))


@dataclass(frozen=True)
class CheckCase:
    start: datetime
    expected: SlotReason | None
    duration_min: int = 60
    now: datetime = LONG_AGO
    policy: BookingPolicy = OPEN_POLICY
    leaves: Sequence[Interval] = ()
    bookings: Sequence[Interval] = ()
    hours: Sequence[tuple[str, str]] = field(default=SPLIT_DAY)
    day: date = MONDAY
    tz: ZoneInfo = PARIS


def paris(hhmm: str, day: date = MONDAY) -> datetime:
    return local(day, hhmm, PARIS)


def piv(start: str, end: str) -> Interval:
    return Interval(paris(start), paris(end))


SOON = BookingPolicy(min_notice_min=120, max_advance_days=100_000)
CHECK_CASES = {
    "on_grid_free": CheckCase(paris("10:00"), None),
    "off_grid_accepted": CheckCase(paris("10:07"), None),
    "fills_interval_exactly": CheckCase(paris("10:00"), None, duration_min=180),
    "second_interval": CheckCase(paris("17:00"), None),
    "ends_after_interval": CheckCase(paris("12:01"), SlotReason.OUTSIDE_WORKING_HOURS),
    "spans_lunch_break": CheckCase(paris("12:30"), SlotReason.OUTSIDE_WORKING_HOURS),
    "before_opening": CheckCase(paris("09:59"), SlotReason.OUTSIDE_WORKING_HOURS),
    "day_without_hours": CheckCase(
        paris("10:00", date(2026, 6, 2)), SlotReason.OUTSIDE_WORKING_HOURS
    ),
    "adjacent_intervals_are_separate": CheckCase(
        paris("12:30"),
        SlotReason.OUTSIDE_WORKING_HOURS,
        hours=(("10:00", "13:00"), ("13:00", "18:00")),
    ),
    "in_past": CheckCase(paris("10:00"), SlotReason.IN_PAST, now=paris("10:01")),
    "start_equal_now": CheckCase(paris("10:00"), None, now=paris("10:00")),
    "too_soon": CheckCase(paris("11:00"), SlotReason.TOO_SOON, now=paris("09:01"), policy=SOON),
    "notice_boundary": CheckCase(paris("11:00"), None, now=paris("09:00"), policy=SOON),
    "too_far": CheckCase(
        paris("10:00"),
        SlotReason.TOO_FAR,
        now=paris("09:59") - timedelta(days=30),
        policy=BookingPolicy(max_advance_days=30),
    ),
    "advance_boundary": CheckCase(
        paris("10:00"),
        None,
        now=paris("10:00") - timedelta(days=30),
        policy=BookingPolicy(max_advance_days=30),
    ),
    "on_leave": CheckCase(paris("10:00"), SlotReason.ON_LEAVE, leaves=[piv("10:59", "11:00")]),
    "already_booked": CheckCase(
        paris("10:00"), SlotReason.ALREADY_BOOKED, bookings=[piv("10:30", "11:30")]
    ),
    "back_to_back_booking": CheckCase(paris("11:00"), None, bookings=[piv("10:00", "11:00")]),
    "back_to_back_leave": CheckCase(paris("11:00"), None, leaves=[piv("12:00", "14:00")]),
    "buffer_blocks_back_to_back": CheckCase(
        paris("11:00"),
        SlotReason.ALREADY_BOOKED,
        bookings=[piv("10:00", "11:00")],
        policy=BookingPolicy(buffer_min=1, max_advance_days=100_000),
    ),
    "past_beats_outside_and_booked": CheckCase(
        paris("09:00"), SlotReason.IN_PAST, now=paris("09:30"), bookings=[piv("09:00", "10:00")]
    ),
    "soon_beats_outside": CheckCase(
        paris("09:00"), SlotReason.TOO_SOON, now=paris("08:00"), policy=SOON
    ),
    "far_beats_outside": CheckCase(
        paris("20:00"),
        SlotReason.TOO_FAR,
        now=paris("10:00") - timedelta(days=1),
        policy=BookingPolicy(max_advance_days=1),
    ),
    "outside_beats_leave": CheckCase(
        paris("12:30"), SlotReason.OUTSIDE_WORKING_HOURS, leaves=[piv("12:00", "15:00")]
    ),
    "leave_beats_booking": CheckCase(
        paris("10:00"),
        SlotReason.ON_LEAVE,
        leaves=[piv("10:00", "10:30")],
        bookings=[piv("10:00", "11:00")],
    ),
    "dst_gap_night_start_after_gap": CheckCase(
        z("2026-03-29T01:00"), None, hours=(("00:00", "06:00"),), day=PARIS_SPRING
    ),
    "dst_gap_night_ends_at_resolved_end": CheckCase(
        z("2026-03-29T03:30"),
        SlotReason.OUTSIDE_WORKING_HOURS,
        hours=(("00:00", "06:00"),),
        day=PARIS_SPRING,
    ),
    "dst_overlap_night_second_0230_is_inside": CheckCase(
        local(PARIS_FALL, "02:30", PARIS, fold=1),
        None,
        hours=(("00:00", "06:00"),),
        day=PARIS_FALL,
    ),
    "aware_non_utc_start": CheckCase(
        local(MONDAY, "13:30", KOLKATA),
        None,  # 10:00 Paris
    ),
}


@pytest.mark.parametrize("case", CHECK_CASES.values(), ids=CHECK_CASES.keys())
def test_check_slot(case: CheckCase) -> None:
    reason = check_slot(
        tz=case.tz,
        hours=[on(case.day, start, end) for start, end in case.hours],
        leaves=case.leaves,
        bookings=case.bookings,
        policy=case.policy,
        start=case.start,
        duration=timedelta(minutes=case.duration_min),
        now=case.now,
    )
    assert reason == case.expected


# ---------------------------------------------------------------------------- busy_window


def test_busy_window_widens_by_buffer_and_returns_utc() -> None:
    window = busy_window(
        local(MONDAY, "10:00", PARIS), local(MONDAY, "18:00", PARIS), BookingPolicy(buffer_min=15)
    )
    assert window == Interval(z("2026-06-01T07:45"), z("2026-06-01T16:15"))
    assert window.start.tzinfo is UTC
    assert window.end.tzinfo is UTC


def test_busy_window_without_buffer_is_the_range() -> None:
    start, end = z("2026-06-01T00:00"), z("2026-06-02T00:00")
    assert busy_window(start, end, BookingPolicy()) == Interval(start, end)


# ----------------------------------------------------------------------------- validation

NAIVE = datetime(2026, 6, 1, 10, 0)
AWARE = z("2026-06-01T10:00")
AWARE_LATER = z("2026-06-01T11:00")


def _list(**override: object) -> list[Slot]:
    kwargs: dict[str, object] = {
        "tz": UTC_ZONE,
        "hours": [on(MONDAY, "10:00", "14:00")],
        "leaves": [],
        "bookings": [],
        "policy": OPEN_POLICY,
        "duration": timedelta(minutes=60),
        "step": timedelta(minutes=30),
        "range_start": AWARE,
        "range_end": AWARE_LATER,
        "now": LONG_AGO,
    }
    kwargs.update(override)
    return list_slots(**kwargs)  # type: ignore[arg-type]


def _check(**override: object) -> SlotReason | None:
    kwargs: dict[str, object] = {
        "tz": UTC_ZONE,
        "hours": [on(MONDAY, "10:00", "14:00")],
        "leaves": [],
        "bookings": [],
        "policy": OPEN_POLICY,
        "start": AWARE,
        "duration": timedelta(minutes=60),
        "now": LONG_AGO,
    }
    kwargs.update(override)
    return check_slot(**kwargs)  # type: ignore[arg-type]


INVALID_CALLS = {
    "list_naive_range_start": lambda: _list(range_start=NAIVE),
    "list_naive_range_end": lambda: _list(range_end=NAIVE),
    "list_naive_now": lambda: _list(now=NAIVE),
    "list_naive_booking": lambda: _list(bookings=[Interval(NAIVE, AWARE_LATER)]),
    "list_naive_leave_end": lambda: _list(leaves=[Interval(AWARE, NAIVE)]),
    "list_naive_even_for_empty_range": lambda: _list(range_start=NAIVE, range_end=NAIVE),
    "list_zero_step": lambda: _list(step=timedelta(0)),
    "list_negative_duration": lambda: _list(duration=-MIN),
    "list_negative_buffer": lambda: _list(policy=BookingPolicy(buffer_min=-1)),
    "list_booking_ends_before_start": lambda: _list(bookings=[Interval(AWARE_LATER, AWARE)]),
    "list_bad_weekday": lambda: _list(hours=[WorkingHours(7, time(10), time(12))]),
    "list_aware_working_time": lambda: _list(
        hours=[WorkingHours(0, time(10, tzinfo=UTC), time(12))]
    ),
    "check_naive_start": lambda: _check(start=NAIVE),
    "check_naive_now": lambda: _check(now=NAIVE),
    "check_naive_booking": lambda: _check(bookings=[Interval(NAIVE, NAIVE)]),
    "check_zero_duration": lambda: _check(duration=timedelta(0)),
    "check_negative_notice": lambda: _check(policy=BookingPolicy(min_notice_min=-5)),
    "working_intervals_naive_start": lambda: working_intervals(UTC_ZONE, [], NAIVE, AWARE),
    "working_intervals_naive_end": lambda: working_intervals(UTC_ZONE, [], AWARE, NAIVE),
    "busy_window_naive_start": lambda: busy_window(NAIVE, AWARE, BookingPolicy()),
    "busy_window_naive_end": lambda: busy_window(AWARE, NAIVE, BookingPolicy()),
}


@pytest.mark.parametrize("call", INVALID_CALLS.values(), ids=INVALID_CALLS.keys())
def test_invalid_input_raises_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(
        ValueError, match=r"timezone-aware|positive|negative|day_of_week|naive|ends before"
    ):
        call()


def test_slot_reason_values_are_contract_strings() -> None:
    assert {r.value for r in SlotReason} == {
        "OUTSIDE_WORKING_HOURS",
        "ON_LEAVE",
        "ALREADY_BOOKED",
        "IN_PAST",
        "TOO_SOON",
        "TOO_FAR",
    }
    assert SlotReason.ON_LEAVE == "ON_LEAVE"


# ================================================================= property-based tests

ZONES = [
    PARIS,
    NEW_YORK,
    LORD_HOWE,
    KOLKATA,
    UTC_ZONE,
    ZoneInfo("Europe/Dublin"),  # negative DST in tzdata: winter is the "saving" time
]
# Days with transitions in at least one zone above, so the properties hit DST edges.
TRANSITION_DAYS = [PARIS_SPRING, PARIS_FALL, NY_SPRING, NY_FALL, LH_SPRING, date(2026, 4, 5)]


@dataclass(frozen=True)
class Scenario:
    tz: ZoneInfo
    hours: list[WorkingHours]
    leaves: list[Interval]
    bookings: list[Interval]
    policy: BookingPolicy
    duration: timedelta
    step: timedelta
    range_start: datetime
    range_end: datetime
    now: datetime

    def slots(self) -> list[Slot]:
        return list_slots(
            tz=self.tz,
            hours=self.hours,
            leaves=self.leaves,
            bookings=self.bookings,
            policy=self.policy,
            duration=self.duration,
            step=self.step,
            range_start=self.range_start,
            range_end=self.range_end,
            now=self.now,
        )

    def check(self, start: datetime) -> SlotReason | None:
        return check_slot(
            tz=self.tz,
            hours=self.hours,
            leaves=self.leaves,
            bookings=self.bookings,
            policy=self.policy,
            start=start,
            duration=self.duration,
            now=self.now,
        )


MIDNIGHT = time(0)


def minutes_of_day(low: int, high: int) -> st.SearchStrategy[int]:
    # Mostly quarter hours: like real schedules, and they land exactly on DST edges.
    quarters = st.integers(-(-low // 15), high // 15).map(lambda q: q * 15)
    return st.one_of(quarters, st.integers(low, high))


def clock(minute: int) -> time:
    return MIDNIGHT if minute == 1440 else time(minute // 60, minute % 60)


@st.composite
def working_hours(draw: st.DrawFn) -> list[WorkingHours]:
    hours: list[WorkingHours] = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(minutes_of_day(0, 1439))
        # Usually after the start; sometimes anywhere, so inverted ones must be skipped.
        end = draw(st.one_of(minutes_of_day(start + 1, 1440), minutes_of_day(1, 1440)))
        days = draw(
            st.one_of(
                st.just(list(range(7))),
                st.lists(st.integers(0, 6), min_size=1, max_size=3),
            )
        )
        hours.extend(WorkingHours(d, clock(start), clock(end)) for d in days)
    return hours


@st.composite
def intervals_near(
    draw: st.DrawFn, anchor: datetime, span_min: int, max_size: int, max_len_min: int
) -> list[Interval]:
    """Intervals mostly around ``[anchor, anchor + span_min)``, each written in a random
    zone (the rules must compare instants, not wall-clock fields)."""
    result: list[Interval] = []
    for _ in range(draw(st.integers(0, max_size))):
        offset = draw(st.integers(-max_len_min - 600, span_min + 600))
        length = draw(st.integers(0, max_len_min))
        shown_in = draw(st.sampled_from(ZONES))
        # Add in UTC: arithmetic on a zoned datetime is wall-clock and breaks across DST.
        start = anchor + offset * MIN
        result.append(
            Interval(start.astimezone(shown_in), (start + length * MIN).astimezone(shown_in))
        )
    return result


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    tz = draw(st.sampled_from(ZONES))
    day = draw(
        st.one_of(
            st.sampled_from(TRANSITION_DAYS),
            st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)),
        )
    )
    range_start = datetime.combine(day, time(0), tzinfo=UTC) + draw(st.integers(-1440, 1440)) * MIN
    span = draw(st.one_of(st.integers(1, 3 * 1440), st.integers(1440, 3 * 1440)))
    return Scenario(
        tz=tz,
        hours=draw(working_hours()),
        leaves=draw(intervals_near(range_start, span, 3, 2 * 1440)),
        bookings=draw(intervals_near(range_start, span, 12, 300)),
        # Skewed towards bookable answers so the busy rules are exercised, not only the
        # time limits; the wide alternatives still reach every boundary.
        policy=BookingPolicy(
            buffer_min=draw(st.one_of(st.just(0), st.integers(0, 90))),
            min_notice_min=draw(st.one_of(st.just(0), st.integers(0, 240), st.integers(0, 2880))),
            max_advance_days=draw(st.one_of(st.just(365), st.integers(0, 4))),
        ),
        duration=draw(st.one_of(st.integers(5, 120), st.integers(5, 600))) * MIN,
        step=draw(st.integers(5, 240)) * MIN,
        range_start=range_start,
        range_end=range_start + span * MIN,
        now=range_start + draw(st.integers(-3 * 86400, 2 * 86400)) * timedelta(seconds=1),
    )


# --- brute-force reference: deliberately naive and structured differently -------------


def ref_resolve(naive: datetime, tz: ZoneInfo) -> datetime:
    candidate = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if candidate.astimezone(tz).replace(tzinfo=None) == naive:
        return candidate
    # In a gap: walk forward minute by minute to the first instant at or after it.
    walk = naive.replace(tzinfo=tz, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while walk.astimezone(tz).replace(tzinfo=None) < naive:
        walk += MIN
    return walk


def ref_intervals(sc: Scenario, *instants: datetime) -> list[Interval]:
    """Working intervals on every local date within two days of the given instants."""
    dates = [t.astimezone(sc.tz).date() for t in instants]
    first = min(dates) - timedelta(days=2)
    last = max(dates) + timedelta(days=2)
    result = []
    day = first
    while day <= last:
        for wh in sc.hours:
            if wh.day_of_week != day.weekday():
                continue
            end_day = day + timedelta(days=1) if wh.end == MIDNIGHT else day
            start = ref_resolve(datetime.combine(day, wh.start), sc.tz)
            end = ref_resolve(datetime.combine(end_day, wh.end), sc.tz)
            if end > start:
                result.append(Interval(start, end))
        day += timedelta(days=1)
    return result


def widened(b: Interval, buffer: timedelta) -> tuple[datetime, datetime]:
    # Via UTC: ``zoned - timedelta`` is wall-clock arithmetic and is wrong across DST.
    return b.start.astimezone(UTC) - buffer, b.end.astimezone(UTC) + buffer


def shares_instant(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return max(a_start, b_start) < min(a_end, b_end)


def ref_reason(sc: Scenario, start: datetime, *, check_hours: bool) -> SlotReason | None:
    end = start + sc.duration
    buffer = timedelta(minutes=sc.policy.buffer_min)
    if start < sc.now:
        return SlotReason.IN_PAST
    if start < sc.now + timedelta(minutes=sc.policy.min_notice_min):
        return SlotReason.TOO_SOON
    if start > sc.now + timedelta(days=sc.policy.max_advance_days):
        return SlotReason.TOO_FAR
    if check_hours and not any(w.start <= start and end <= w.end for w in ref_intervals(sc, start)):
        return SlotReason.OUTSIDE_WORKING_HOURS
    if any(shares_instant(start, end, lv.start, lv.end) for lv in sc.leaves):
        return SlotReason.ON_LEAVE
    if any(shares_instant(start, end, *widened(b, buffer)) for b in sc.bookings):
        return SlotReason.ALREADY_BOOKED
    return None


def ref_slots(sc: Scenario) -> list[tuple[datetime, datetime, SlotReason | None]]:
    starts: set[datetime] = set()
    for work in ref_intervals(sc, sc.range_start, sc.range_end):
        start = work.start
        while start + sc.duration <= work.end:
            if sc.range_start <= start < sc.range_end:
                starts.add(start)
            start += sc.step
    return [(s, s + sc.duration, ref_reason(sc, s, check_hours=False)) for s in sorted(starts)]


PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,  # keep the shared tree free of a .hypothesis directory
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(scenarios())
def test_property_available_slots_avoid_busy(sc: Scenario) -> None:
    buffer = timedelta(minutes=sc.policy.buffer_min)
    for slot in sc.slots():
        if not slot.available:
            continue
        for lv in sc.leaves:
            assert not shares_instant(slot.start, slot.end, lv.start, lv.end)
        for b in sc.bookings:
            assert not shares_instant(slot.start, slot.end, *widened(b, buffer))
        assert slot.start >= sc.now + timedelta(minutes=sc.policy.min_notice_min)
        assert slot.start <= sc.now + timedelta(days=sc.policy.max_advance_days)


@PROPERTY
@given(scenarios())
def test_property_slots_lie_on_one_working_interval_grid(sc: Scenario) -> None:
    work = working_intervals(sc.tz, sc.hours, sc.range_start, sc.range_end)
    for slot in sc.slots():
        assert any(
            w.start <= slot.start
            and slot.end <= w.end
            and (slot.start - w.start) % sc.step == timedelta(0)
            for w in work
        )


@PROPERTY
@given(scenarios())
def test_property_slots_sorted_unique_in_range_utc(sc: Scenario) -> None:
    slots = sc.slots()
    starts = [s.start for s in slots]
    assert starts == sorted(set(starts))
    for slot in slots:
        assert sc.range_start <= slot.start < sc.range_end
        assert slot.end - slot.start == sc.duration
        assert slot.start.tzinfo is UTC
        assert slot.end.tzinfo is UTC
        assert slot.available == (slot.reason is None)
        assert slot.reason != SlotReason.OUTSIDE_WORKING_HOURS


@PROPERTY
@given(scenarios())
def test_property_check_slot_agrees_with_list_slots(sc: Scenario) -> None:
    for slot in sc.slots():
        assert sc.check(slot.start) == slot.reason


@PROPERTY
@given(scenarios())
def test_property_list_slots_matches_brute_force(sc: Scenario) -> None:
    assert [(s.start, s.end, s.reason) for s in sc.slots()] == ref_slots(sc)


@PROPERTY
@given(scenarios(), st.integers(-1440, 4 * 1440))
def test_property_check_slot_matches_brute_force_off_grid(sc: Scenario, offset: int) -> None:
    start = sc.range_start + offset * MIN
    assert sc.check(start) == ref_reason(sc, start, check_hours=True)


@PROPERTY
@given(scenarios())
def test_property_busy_window_query_is_sufficient(sc: Scenario) -> None:
    # The documented caller recipe: load rows overlapping busy_window(range_start,
    # range_end + duration); dropping everything else must not change the answer.
    window = busy_window(sc.range_start, sc.range_end + sc.duration, sc.policy)

    def loaded(rows: list[Interval]) -> list[Interval]:
        return [r for r in rows if r.start < window.end and r.end > window.start]

    trimmed = replace(sc, leaves=loaded(sc.leaves), bookings=loaded(sc.bookings))
    assert trimmed.slots() == sc.slots()


# --- stable_until: how long an availability answer stays exact ------------------------


def _stable_case():
    tz = ZoneInfo("Europe/Paris")
    hours = [WorkingHours(d, time(10), time(18)) for d in range(7)]
    policy = BookingPolicy(buffer_min=0, min_notice_min=120, max_advance_days=2)
    now = datetime(2030, 6, 3, 9, 7, tzinfo=UTC)
    start = datetime(2030, 6, 3, 0, 0, tzinfo=UTC)
    end = start + timedelta(days=4)
    return tz, hours, policy, now, start, end


def test_stable_until_is_the_next_change_and_answers_do_not_change_before_it():
    tz, hours, policy, now, start, end = _stable_case()
    hold = Interval(datetime(2030, 6, 4, 12, tzinfo=UTC), datetime(2030, 6, 4, 13, tzinfo=UTC))
    hold_expiry = now + timedelta(minutes=7)

    def answer(at, with_hold=True):
        return list_slots(
            tz=tz,
            hours=hours,
            leaves=[],
            bookings=[hold] if with_hold else [],
            policy=policy,
            duration=timedelta(hours=1),
            step=timedelta(minutes=30),
            range_start=start,
            range_end=end,
            now=at,
        )

    first = answer(now)
    until = stable_until(first, policy=policy, now=now, hold_expiries=[hold_expiry])
    assert until == hold_expiry  # the earliest change
    for seconds in (0, 60, 419):
        assert answer(now + timedelta(seconds=seconds)) == first
    assert answer(until, with_hold=False) != first  # the hold no longer blocks


def test_stable_until_without_holds_is_the_next_time_boundary():
    tz, hours, policy, now, start, end = _stable_case()
    slots = list_slots(
        tz=tz,
        hours=hours,
        leaves=[],
        bookings=[],
        policy=policy,
        duration=timedelta(hours=1),
        step=timedelta(minutes=30),
        range_start=start,
        range_end=end,
        now=now,
    )
    until = stable_until(slots, policy=policy, now=now)
    assert now < until <= now + timedelta(minutes=30)
    before = list_slots(
        tz=tz,
        hours=hours,
        leaves=[],
        bookings=[],
        policy=policy,
        duration=timedelta(hours=1),
        step=timedelta(minutes=30),
        range_start=start,
        range_end=end,
        now=until - timedelta(microseconds=1),
    )
    after = list_slots(
        tz=tz,
        hours=hours,
        leaves=[],
        bookings=[],
        policy=policy,
        duration=timedelta(hours=1),
        step=timedelta(minutes=30),
        range_start=start,
        range_end=end,
        now=until + timedelta(microseconds=1),
    )
    assert before == slots
    assert after != slots
