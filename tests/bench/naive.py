"""The naive availability reference: one database query per candidate slot.

It exists only to give the API's answer something to be compared with, for speed and
for correctness: it builds the slot grid from the artist's working hours itself and asks
PostgreSQL, slot by slot, whether a live booking (widened by the buffer) or a leave
overlaps it. The grid rules are the contract's: slots start at each working interval's
start and every `step` after it, end inside the interval, and are listed when their start
lies in [start, end). Local times are converted with zoneinfo's fold=0; the bench's
working hours (10:00–18:00) never fall into a daylight-saving gap, where the API's finer rule
would apply.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

import psycopg

SLOT_QUERY = """
SELECT EXISTS (
           SELECT 1 FROM bookings
            WHERE artist_id = %(artist)s
              AND start_time < %(end)s + make_interval(mins => %(buffer)s)
              AND end_time > %(start)s - make_interval(mins => %(buffer)s)
              AND (status = 'CONFIRMED'
                   OR (status = 'PENDING_PAYMENT' AND expires_at > %(now)s)))
    OR EXISTS (
           SELECT 1 FROM leaves
            WHERE artist_id = %(artist)s AND start_time < %(end)s AND end_time > %(start)s)
"""


def _grid(
    tz: ZoneInfo,
    hours: list[tuple[int, int, int]],
    start: datetime,
    end: datetime,
    duration: timedelta,
    step: timedelta,
) -> list[datetime]:
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    starts: set[datetime] = set()
    day: date = first
    while day <= last:
        for dow, start_min, end_min in hours:
            if dow != day.weekday():
                continue
            iv_start = datetime.combine(
                day, clock_time(start_min // 60, start_min % 60), tz
            ).astimezone(UTC)
            end_day = day + timedelta(days=end_min // 1440)
            end_clock = clock_time((end_min % 1440) // 60, end_min % 60)
            iv_end = datetime.combine(end_day, end_clock, tz).astimezone(UTC)
            slot = iv_start
            while slot + duration <= iv_end:
                if start <= slot < end:
                    starts.add(slot)
                slot += step
        day += timedelta(days=1)
    return sorted(starts)


def naive_availability(
    conn: psycopg.Connection,
    artist_id: str,
    start: datetime,
    end: datetime,
    duration_min: int,
    step_min: int,
) -> list[tuple[datetime, bool]]:
    """[(slot start in UTC, available)] in time order, one query per slot."""
    now = datetime.now(UTC)
    row = conn.execute(
        "SELECT timezone, buffer_min, min_notice_min, max_advance_days FROM artists WHERE id = %s",
        (artist_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"artist {artist_id} not found")
    tz_name, buffer_min, notice_min, advance_days = row
    hours = [
        (int(d), int(s), int(e))
        for d, s, e in conn.execute(
            "SELECT day_of_week, start_minute, end_minute FROM working_hours WHERE artist_id = %s",
            (artist_id,),
        )
    ]
    duration = timedelta(minutes=duration_min)
    grid = _grid(
        ZoneInfo(tz_name),
        hours,
        start.astimezone(UTC),
        end.astimezone(UTC),
        duration,
        timedelta(minutes=step_min),
    )
    earliest = now + timedelta(minutes=notice_min)
    latest = now + timedelta(days=advance_days)
    answer: list[tuple[datetime, bool]] = []
    for slot in grid:
        params = {
            "artist": artist_id,
            "start": slot,
            "end": slot + duration,
            "buffer": buffer_min,
            "now": now,
        }
        found = conn.execute(SLOT_QUERY, params).fetchone()
        busy = bool(found and found[0])
        in_time = earliest <= slot <= latest
        answer.append((slot, in_time and not busy))
    return answer


def time_naive(
    url: str,
    artist_id: str,
    start: datetime,
    end: datetime,
    duration_min: int,
    step_min: int,
    repeat: int,
) -> tuple[list[tuple[datetime, bool]], list[float]]:
    """The answer and the wall time of each of `repeat` full answers (after one warm-up
    answer, which also lets psycopg prepare the statement)."""
    with psycopg.connect(url, autocommit=True) as conn:
        answer = naive_availability(conn, artist_id, start, end, duration_min, step_min)
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            naive_availability(conn, artist_id, start, end, duration_min, step_min)
            times.append(time.perf_counter() - began)
    return answer, times
