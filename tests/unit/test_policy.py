"""The deposit policy at its edges: exactly N hours before, DST days, other time zones."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.domain.policy import (
    DEFAULT_POLICY,
    DepositPolicy,
    PolicyReason,
    cancel_refusal,
    close_refusal,
    new_booking_refusal,
    refund_on_client_cancel,
    reminder_at,
    reschedule_refusal,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 6, 10, 14, 0, tzinfo=PARIS)
SECOND = timedelta(seconds=1)


def test_defaults_follow_the_contract() -> None:
    assert (
        DepositPolicy(
            refund_window_hours=None,
            reschedule_notice_hours=48,
            max_reschedules=1,
            reminder_hours=24,
            no_show_limit=0,
        )
        == DEFAULT_POLICY
    )


@pytest.mark.parametrize(
    ("window", "before_start", "refunded"),
    [
        (None, timedelta(days=30), False),  # no window: never refunded
        (48, timedelta(hours=48), True),  # exactly N hours before counts
        (48, timedelta(hours=48) - SECOND, False),
        (48, timedelta(hours=48) + SECOND, True),
        (0, SECOND, True),  # a window of 0: any time before the start
        (0, timedelta(0), False),  # ... but not at the start
        (24, -timedelta(hours=1), False),  # after the start
    ],
)
def test_refund_on_client_cancel(
    window: int | None, before_start: timedelta, refunded: bool
) -> None:
    policy = DepositPolicy(refund_window_hours=window)
    assert refund_on_client_cancel(policy, start=START, now=START - before_start) is refunded


@pytest.mark.parametrize(
    ("before_start", "count", "expected"),
    [
        (timedelta(hours=48), 0, None),
        (timedelta(hours=48) - SECOND, 0, PolicyReason.TOO_LATE_TO_RESCHEDULE),
        (timedelta(days=10), 1, PolicyReason.RESCHEDULE_LIMIT),
        # Both refused: the limit, which will never lift, is the reason given.
        (timedelta(hours=1), 1, PolicyReason.RESCHEDULE_LIMIT),
        (-timedelta(hours=1), 0, PolicyReason.TOO_LATE_TO_RESCHEDULE),
    ],
)
def test_reschedule_with_default_policy(
    before_start: timedelta, count: int, expected: PolicyReason | None
) -> None:
    assert (
        reschedule_refusal(
            DEFAULT_POLICY, start=START, now=START - before_start, reschedule_count=count
        )
        == expected
    )


def test_reschedule_limits_and_zero_notice() -> None:
    generous = DepositPolicy(reschedule_notice_hours=0, max_reschedules=3)
    for count in range(3):
        assert (
            reschedule_refusal(generous, start=START, now=START - SECOND, reschedule_count=count)
            is None
        )
    assert (
        reschedule_refusal(generous, start=START, now=START - SECOND, reschedule_count=3)
        == PolicyReason.RESCHEDULE_LIMIT
    )
    # Zero notice still needs the booking not to have started.
    assert (
        reschedule_refusal(generous, start=START, now=START, reschedule_count=0)
        == PolicyReason.TOO_LATE_TO_RESCHEDULE
    )
    never = DepositPolicy(max_reschedules=0)
    assert (
        reschedule_refusal(never, start=START, now=START - timedelta(days=60), reschedule_count=0)
        == PolicyReason.RESCHEDULE_LIMIT
    )


@pytest.mark.parametrize(
    ("offset", "cancel", "close"),
    [
        (-SECOND, None, PolicyReason.NOT_STARTED),
        (timedelta(0), PolicyReason.STARTED, None),
        (SECOND, PolicyReason.STARTED, None),
    ],
)
def test_cancel_and_close_around_the_start(
    offset: timedelta, cancel: PolicyReason | None, close: PolicyReason | None
) -> None:
    now = START + offset
    assert cancel_refusal(start=START, now=now) == cancel
    assert close_refusal(start=START, now=now) == close


@pytest.mark.parametrize(
    ("limit", "no_shows", "expected"),
    [
        (0, 10, None),  # off
        (2, 1, None),
        (2, 2, PolicyReason.NO_SHOW_LIMIT),
        (1, 1, PolicyReason.NO_SHOW_LIMIT),
    ],
)
def test_no_show_limit(limit: int, no_shows: int, expected: PolicyReason | None) -> None:
    assert new_booking_refusal(DepositPolicy(no_show_limit=limit), no_shows=no_shows) == expected


def test_reminder_time() -> None:
    assert reminder_at(DEFAULT_POLICY, start=START) == START - timedelta(hours=24)
    assert reminder_at(DepositPolicy(reminder_hours=0), start=START) is None
    assert reminder_at(DepositPolicy(reminder_hours=2), start=START) == START - timedelta(hours=2)


# --- DST: elapsed hours, not wall-clock hours --------------------------------------------


def test_notice_across_spring_forward_counts_elapsed_hours() -> None:
    # Clocks in Paris go from 02:00 to 03:00 on Sunday 29 March 2026. A 10:00 booking on
    # Monday 30 March: 48 elapsed hours before is Saturday 09:00 local, not 10:00.
    start = datetime(2026, 3, 30, 10, 0, tzinfo=PARIS)
    deadline = datetime(2026, 3, 28, 9, 0, tzinfo=PARIS)
    # (Subtracting in the zone itself would give 49 h: Python compares wall clocks then.)
    assert start.astimezone(UTC) - deadline.astimezone(UTC) == timedelta(hours=48)
    assert reschedule_refusal(DEFAULT_POLICY, start=start, now=deadline, reschedule_count=0) is None
    assert (
        reschedule_refusal(DEFAULT_POLICY, start=start, now=deadline + SECOND, reschedule_count=0)
        == PolicyReason.TOO_LATE_TO_RESCHEDULE
    )
    # Saturday 10:00 local is only 47 elapsed hours before.
    assert (
        reschedule_refusal(
            DEFAULT_POLICY,
            start=start,
            now=datetime(2026, 3, 28, 10, 0, tzinfo=PARIS),
            reschedule_count=0,
        )
        == PolicyReason.TOO_LATE_TO_RESCHEDULE
    )


def test_refund_window_across_fall_back_counts_elapsed_hours() -> None:
    # Clocks in New York go from 02:00 back to 01:00 on Sunday 1 November 2026. A 10:00
    # booking that Sunday: 24 elapsed hours before is Saturday 11:00 local.
    start = datetime(2026, 11, 1, 10, 0, tzinfo=NEW_YORK)
    policy = DepositPolicy(refund_window_hours=24)
    deadline = datetime(2026, 10, 31, 11, 0, tzinfo=NEW_YORK)
    assert start.astimezone(UTC) - deadline.astimezone(UTC) == timedelta(hours=24)
    assert refund_on_client_cancel(policy, start=start, now=deadline)
    assert not refund_on_client_cancel(policy, start=start, now=deadline + SECOND)
    # The reminder, 24 elapsed hours before, is at 11:00 local on Saturday as well.
    assert reminder_at(DEFAULT_POLICY, start=start) == deadline


# --- time zones: the artist's, the client's and the server's do not matter ------------


def test_instants_compare_whatever_zone_they_are_written_in() -> None:
    start = datetime(2026, 6, 10, 14, 0, tzinfo=PARIS)
    policy = DepositPolicy(refund_window_hours=48)
    exactly = (start - timedelta(hours=48)).astimezone(TOKYO)
    assert refund_on_client_cancel(policy, start=start, now=exactly)
    assert refund_on_client_cancel(policy, start=start.astimezone(NEW_YORK), now=exactly)
    assert not refund_on_client_cancel(policy, start=start, now=(exactly + SECOND).astimezone(UTC))


@pytest.fixture
def server_in_auckland() -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Auckland"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.mark.usefixtures("server_in_auckland")
def test_server_time_zone_changes_nothing() -> None:
    assert time.localtime(0).tm_hour == 12  # the process really runs in Auckland time
    start = datetime(2026, 3, 30, 10, 0, tzinfo=PARIS)
    deadline = start.astimezone(UTC) - timedelta(hours=48)
    assert reschedule_refusal(DEFAULT_POLICY, start=start, now=deadline, reschedule_count=0) is None
    assert (
        reschedule_refusal(DEFAULT_POLICY, start=start, now=deadline + SECOND, reschedule_count=0)
        == PolicyReason.TOO_LATE_TO_RESCHEDULE
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        refund_on_client_cancel(
            DepositPolicy(refund_window_hours=1), start=datetime(2026, 1, 1), now=START
        )
    with pytest.raises(ValueError, match="negative"):
        DepositPolicy(max_reschedules=-1)
