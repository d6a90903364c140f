"""The keyset cursor: opaque text that names a row's (start, id), decoded strictly."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.pagination import CursorError, Keyset

ID = uuid.UUID("6a3c6b9e-0000-4000-8000-000000000001")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@given(
    start=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    ident=st.uuids(),
)
def test_round_trip_is_exact(start, ident):
    key = Keyset(start, ident)
    token = key.encode()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    decoded = Keyset.decode(token)
    # The same instant to the microsecond, whatever offset it was written with.
    assert decoded == Keyset(start.astimezone(UTC), ident)
    assert decoded.start == start


def test_keys_order_by_start_then_id():
    start = datetime(2030, 1, 1, 10, tzinfo=UTC)
    low, high = uuid.UUID(int=1), uuid.UUID(int=2)
    assert Keyset(start, low) < Keyset(start, high) < Keyset(start + timedelta(microseconds=1), low)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "not a cursor!",
        "é",
        b64("2030-01-01T10:00:00+00:00"),
        b64(f"2030-01-01T10:00:00|{ID}"),  # no offset
        b64(f"yesterday|{ID}"),
        b64("2030-01-01T10:00:00+00:00|not-a-uuid"),
        b64(f"2030-01-01T10:00:00+00:00|{ID}|extra"),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    ],
)
def test_anything_else_is_refused(token):
    with pytest.raises(CursorError):
        Keyset.decode(token)


def test_a_keyset_needs_an_aware_start():
    with pytest.raises(ValueError, match="timezone-aware"):
        Keyset(datetime(2030, 1, 1), ID)
