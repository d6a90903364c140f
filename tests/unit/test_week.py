"""The dashboard's week in the artist's zone: Monday first, bounded by local midnights
(a week across a DST change is not 7 × 24 hours)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.domain import signin
from shared.domain.week import local_midnight, today_in, week_of


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        (date(2026, 3, 23), date(2026, 3, 23)),  # a Monday is its own week's
        (date(2026, 3, 29), date(2026, 3, 23)),  # a Sunday belongs to the week before
        (date(2026, 1, 1), date(2025, 12, 29)),  # across a new year
    ],
)
def test_the_week_starts_on_monday(day: date, monday: date) -> None:
    week = week_of(day, "Europe/Paris")
    assert week.monday == monday
    assert week.days[0] == monday
    assert week.days[-1] == monday + timedelta(days=6)
    assert week.previous == monday - timedelta(days=7)
    assert week.next == monday + timedelta(days=7)


@pytest.mark.parametrize(
    ("zone", "monday", "start", "hours"),
    [
        # Paris springs forward on Sunday 29 March 2026: that week is an hour short.
        ("Europe/Paris", date(2026, 3, 23), datetime(2026, 3, 22, 23, 0, tzinfo=UTC), 167),
        # ...and falls back on Sunday 25 October 2026: an hour long.
        ("Europe/Paris", date(2026, 10, 19), datetime(2026, 10, 18, 22, 0, tzinfo=UTC), 169),
        ("UTC", date(2026, 3, 23), datetime(2026, 3, 23, 0, 0, tzinfo=UTC), 168),
        # Auckland is ahead of UTC: its Monday starts on Sunday, UTC.
        ("Pacific/Auckland", date(2026, 6, 1), datetime(2026, 5, 31, 12, 0, tzinfo=UTC), 168),
    ],
)
def test_the_bounds_are_local_midnights(
    zone: str, monday: date, start: datetime, hours: int
) -> None:
    week = week_of(monday, zone)
    assert week.start == start
    assert week.end - week.start == timedelta(hours=hours)


def test_a_skipped_midnight_maps_to_the_end_of_the_gap() -> None:
    # Santiago springs forward at 00:00 (-04) on Sunday 6 September 2026, to 01:00 (-03):
    # the day starts at 04:00 UTC, the instant of the change.
    start = local_midnight(date(2026, 9, 6), "America/Santiago")
    assert start == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)
    assert start - local_midnight(date(2026, 9, 5), "America/Santiago") == timedelta(hours=24)


def test_today_is_the_artists_date() -> None:
    late = datetime(2026, 5, 4, 23, 30, tzinfo=UTC)
    assert today_in(late, "Europe/Paris") == date(2026, 5, 5)
    assert today_in(late, "America/New_York") == date(2026, 5, 4)
    with pytest.raises(ValueError, match="naive"):
        today_in(late.replace(tzinfo=None), "UTC")


def test_the_operator_token_check() -> None:
    assert signin.is_operator_token("secret-token", "secret-token")
    assert not signin.is_operator_token("secret-token", "secret-toke")
    assert not signin.is_operator_token("secret-token", "")
    assert not signin.is_operator_token("", "")  # an empty setting admits nobody


def test_the_link_rate_limit() -> None:
    assert signin.may_send_link(signin.LINKS_PER_WINDOW - 1)
    assert not signin.may_send_link(signin.LINKS_PER_WINDOW)
