"""The Redis lock per artist-slot.

The lock only reduces contention (losers answer at once instead of queueing on the
database); it is not the guarantee. Redis issues no fencing token and a lock can expire
under a paused holder, so the PostgreSQL exclusion constraint is the fence. Hence: when
Redis is unreachable or refuses the command (OOM under `maxmemory`, MISCONF after a failed
save, READONLY on a demoted replica), booking goes on without the lock (logged), never fails.
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
from redis.exceptions import LockNotOwnedError

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
            "Redis unreachable or refusing commands (%s: %s): booking without the slot "
            "lock, guarded by the database constraint alone",
            type(exc).__name__,
            exc,
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
        acquired: bool | None
        try:
            acquired = lock.acquire()
        except redis.RedisError as exc:
            # Not only connection errors: a reachable Redis that answers an error to SET
            # (OutOfMemoryError, MISCONF, READONLY are ResponseErrors) is just as unusable,
            # and letting it through would turn every booking into a 500.
            self._mark_down(exc)
            acquired = None
        if acquired is None:
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
        except redis.RedisError as exc:
            # Runs after the commit: any Redis failure here must not turn a booking that
            # exists into a 500 (the lock then simply expires after its TTL).
            log.warning("could not release slot lock %s: %s", lock.name, exc)
