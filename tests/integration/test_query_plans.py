"""Every hot statement reads its index, on a modest database (ten artists with the bench's
per-artist history: 2,000 bookings, 4,000 e-mails, 5,000 webhook events, 300 leaves,
3,000 idempotency keys),
planned as production plans it (`enable_seqscan` on). The statements are built by the
functions the application calls (`tests/bench/plans.py`); `make bench` shows the same
plans, with ANALYZE, at 10,000 artists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from tests import support
from tests.bench import bigdata, plans


@pytest.fixture
def history(database_url: str, engine: Any) -> plans.Target:
    with psycopg.connect(support.libpq_url(database_url), autocommit=True) as conn:
        # More idempotency keys than 20 an artist: 200 rows fit in a page or two, where
        # a sequential scan is the right plan.
        bigdata.fill(conn, bigdata.Scale(10), keys_per_artist=300)
        conn.execute("ANALYZE")
    with engine.connect() as conn:
        artist, client, service = conn.execute(
            text("SELECT md5('artist3')::uuid, md5('client61')::uuid, md5('service3:0')::uuid")
        ).one()
    now = datetime.now(UTC)
    tomorrow = now.replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return plans.Target(artist, client, service, start=tomorrow, now=now)


def test_hot_statements_read_their_indexes_never_a_big_table(
    history: plans.Target, engine: Any
) -> None:
    with engine.connect() as conn:
        assert conn.scalar(text("SHOW enable_seqscan")) == "on"
        found = {}
        for hot in plans.hot_statements(history):
            plan = plans.explain(conn, hot, analyze=False)
            found[hot.name] = plans.problems(hot, plan), "\n".join(plan)
    assert {name: issues for name, (issues, _) in found.items() if issues} == {}, "\n\n".join(
        plan for _, plan in found.values()
    )


def test_availability_reads_only_the_window_not_the_artists_past(
    history: plans.Target, engine: Any
) -> None:
    """The artist has 200 bookings over 1,000 days; a 31-day window holds a handful. The
    GiST range condition stops the scan at both ends of the window: the scan throws away
    nothing it read. The former two comparisons reach an index on one bound only (the btree
    (artist_id, start_time) on the upper one, or the GiST index on the artist alone) and
    discard the rest row by row: at 10,000 artists `make bench` shows 150+ rows removed
    per request before, 0 after."""
    [window] = [h for h in plans.hot_statements(history) if h.name.startswith("availability: b")]
    with engine.connect() as conn:
        after = plans.summary(plans.explain(conn, window, analyze=True))
        former = plans.former_bookings_in_window(history)
        before = plans.summary(plans.explain(conn, former, analyze=True))
    assert after.removed == 0, after
    assert before.removed > 0, before  # what the fix removed is really there to remove
    assert after.hit + after.read <= before.hit + before.read
