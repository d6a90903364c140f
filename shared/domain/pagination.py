"""Keyset pagination in (start time, id) order, and its opaque cursor.

A page ends at a row; the next page holds the rows strictly after it in (start, id)
order. Unlike an offset, that position does not move when rows are inserted or removed
elsewhere: each row present throughout a walk is listed exactly once, and a row inserted
after the position reached is listed when the walk gets there.

The cursor is the last row's key as URL-safe base64 text, so that clients treat it as a
token and never build one; decoding is strict (any other text is refused).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

_SEPARATOR = "|"


class CursorError(ValueError):
    """A text that is not a cursor this code wrote."""


@dataclass(frozen=True, slots=True, order=True)
class Keyset:
    start: datetime
    id: uuid.UUID

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None:
            raise ValueError("a keyset's start must be timezone-aware")

    def encode(self) -> str:
        # Microseconds kept: the key must name the row's exact start.
        text = f"{self.start.astimezone(UTC).isoformat()}{_SEPARATOR}{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Self:
        try:
            padded = token + "=" * (-len(token) % 4)
            raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
            text = raw.decode()
            start_text, id_text = text.split(_SEPARATOR)
            start = datetime.fromisoformat(start_text)
            ident = uuid.UUID(id_text)
        # binascii.Error and UnicodeError are ValueErrors too.
        except ValueError:
            raise CursorError("not a cursor this API gave") from None
        if start.utcoffset() is None:
            raise CursorError("not a cursor this API gave")
        return cls(start, ident)
