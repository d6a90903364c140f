"""The Redis lock per artist-slot.

The lock only reduces contention (losers answer at once instead of queueing on the
database); it is not the guarantee. Redis issues no fencing token and a lock can expire
under a paused holder, so the PostgreSQL exclusion constraint is the fence. Hence: when
Redis is unreachable, booking goes on without the lock (logged), never fails.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import redis
from redis.exceptions import LockError, LockNotOwnedError

log = logging.getLogger("inkflow.locks")


class SlotTaken(Exception):
    """Another request holds this slot's lock."""


def slot_lock_key(artist_id: uuid.UUID, start: datetime) -> str:
    return f"inkflow:lock:slot:{artist_id}:{int(start.timestamp())}"


class SlotLocks:
    """Takes slot locks without waiting; skips Redis for a while after it failed, so an
    outage costs one connection timeout per `cooldown` instead of one per request."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: float, cooldown: float = 5.0) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._cooldown = cooldown
        self._down_until = 0.0
        self._mutex = threading.Lock()

    def _redis_usable(self) -> bool:
        with self._mutex:
            return time.monotonic() >= self._down_until

    def _mark_down(self, exc: Exception) -> None:
        with self._mutex:
            self._down_until = time.monotonic() + self._cooldown
        log.warning(
            "Redis unreachable (%s): booking without the slot lock, guarded by the "
            "database constraint alone",
            type(exc).__name__,
        )

    @contextmanager
    def hold(self, artist_id: uuid.UUID, start: datetime) -> Iterator[bool]:
        """Yields True when the lock is held, False when Redis is unavailable.
        Raises SlotTaken when another holder has it."""
        if not self._redis_usable():
            yield False
            return
        lock = self._client.lock(
            slot_lock_key(artist_id, start),
            timeout=self._ttl,
            blocking=False,
            thread_local=False,
        )
        try:
            acquired = lock.acquire()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._mark_down(exc)
            yield False
            return
        if not acquired:
            raise SlotTaken
        try:
            yield True
        finally:
            self._release(lock)

    def _release(self, lock: redis.lock.Lock) -> None:
        try:
            lock.release()
        except LockNotOwnedError:
            # The TTL ran out before we finished; the commit is done by now and the
            # constraint guarded it, so this is worth a warning, not an error.
            log.warning("slot lock %s expired before release", lock.name)
        except (LockError, redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not release slot lock %s: %s", lock.name, exc)
