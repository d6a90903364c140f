"""Claims that expire: "has anyone enqueued this in the last N seconds?", in Redis.

The sweepers (inbox, outbox) re-enqueue work whose first message may have been lost. A
message that is merely slow (a task retrying with backoff, a backlog in the queue) must
not get a new copy on every sweep, or the queue fills with duplicates faster than workers
drain it. One `SET key 1 NX EX ttl` per item, pipelined into one round trip, tells the
first sweep of a window from the others. When Redis cannot answer, every item counts as
claimed: a duplicate task is harmless (every task is idempotent), a lost one is not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

import redis

log = logging.getLogger("inkflow.claims")

Item = TypeVar("Item")


def claim_each(
    client: redis.Redis, prefix: str, items: Sequence[Item], ttl_seconds: int
) -> list[Item]:
    """The items not claimed under `prefix` in the last `ttl_seconds`, now claimed."""
    if not items:
        return []
    ttl = max(1, ttl_seconds)
    try:
        with client.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.set(f"{prefix}{item}", 1, nx=True, ex=ttl)
            answers = pipe.execute()
    except redis.RedisError as exc:
        log.warning("Redis unavailable for %s claims (%s): enqueuing all", prefix, exc)
        return list(items)
    return [item for item, fresh in zip(items, answers, strict=True) if fresh]
