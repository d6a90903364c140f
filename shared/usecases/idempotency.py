"""`Idempotency-Key` on booking creation.

The key is claimed in its own committed transaction before any work, so two concurrent
requests with one key cannot both create a booking: the second waits for the first's
answer and replays it. Only a success (201) is kept; after a failure the key is released
so the client may retry. Keys live 24 hours.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import IdempotencyKey
from shared.domain.errors import DomainError, ErrorCode

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# IdempotencyKey.key's column. The stored key is the client's key scoped by who sent it
# (`<client id>:<key>`), which can be longer than the key itself.
_STORED_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: dict[str, Any]


def request_fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _header_error(message: str) -> DomainError:
    return DomainError(ErrorCode.VALIDATION_ERROR, message, {"fields": {HEADER: message}})


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise _header_error(f"must be 1 to {MAX_KEY_LENGTH} characters")
    # HTTP servers refuse control characters in a header; anything else that passes the
    # value on must not make the key unstorable (PostgreSQL text refuses NUL).
    if any(ord(char) < 0x20 or char == "\x7f" for char in key):
        raise _header_error("must not contain control characters")
    return key


def claim(
    sessions: sessionmaker[Session],
    key: str,
    fingerprint: str,
    *,
    now: datetime,
    wait_seconds: float = 10.0,
) -> Replay | None:
    """None: the key is ours, go ahead. A Replay: answer it. Raises on a reused key with
    another body, or when the first request is still running after `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with transaction(sessions) as session:
            session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.key == key, IdempotencyKey.expires_at <= now
                )
            )
            claimed = session.execute(
                insert(IdempotencyKey)
                .values(key=key, request_hash=fingerprint, expires_at=now + TTL)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(IdempotencyKey.key)
            ).first()
            if claimed is not None:
                return None
            row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))
        if row is None:  # released between our insert and select: try again
            continue
        if row.request_hash != fingerprint:
            raise _header_error("this key was already used with a different request body")
        if row.response_status is not None and row.response_body is not None:
            return Replay(row.response_status, row.response_body)
        if time.monotonic() >= deadline:
            raise DomainError(
                ErrorCode.SLOT_TAKEN, "A request with this Idempotency-Key is still running."
            )
        time.sleep(0.05)


def store(
    sessions: sessionmaker[Session],
    key: str,
    *,
    status: int,
    body: dict[str, Any],
    booking_id: uuid.UUID | None,
) -> None:
    with transaction(sessions) as session:
        row = session.get(IdempotencyKey, key)
        if row is not None:
            row.response_status = status
            row.response_body = body
            row.booking_id = booking_id


def release(sessions: sessionmaker[Session], key: str) -> None:
    with transaction(sessions) as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.key == key, IdempotencyKey.response_status.is_(None)
            )
        )


def run_once(
    sessions: sessionmaker[Session],
    key: str,
    fingerprint: str,
    produce: Callable[[], tuple[int, dict[str, Any], uuid.UUID | None]],
    *,
    now: datetime,
) -> Replay:
    """The first answer under `key`: replayed when the key was seen with this body,
    produced (and kept) otherwise. `produce` returns (status, body, booking id)."""
    key = stored_key(key)
    replay = claim(sessions, key, fingerprint, now=now)
    if replay is not None:
        return replay
    try:
        status, body, booking_id = produce()
    except BaseException:
        release(sessions, key)
        raise
    store(sessions, key, status=status, body=body, booking_id=booking_id)
    return Replay(status, body)


def stored_key(key: str) -> str:
    """The key as the table keeps it: as it is when it fits the column, else its digest
    (still one row per scoped key)."""
    if len(key) <= _STORED_MAX_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
