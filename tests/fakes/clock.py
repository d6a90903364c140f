"""A clock that tests move instead of sleeping; pass it as `create_app(clock=...)` or to
the worker's `Runtime(clock=...)`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        moment = start or datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("the clock tells UTC-aware time")
        self._now = moment.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """`clock.advance(seconds=901)`: move time forward and return the new now."""
        step = (delta or timedelta()) + timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("time does not go back")
        with self._lock:
            self._now += step
            return self._now
