"""Which database failures are momentary (the API answers 503 with Retry-After) and which
are bugs (500): SQLSTATEs as psycopg raises them, wrapped by SQLAlchemy."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from shared.adapters.db import is_momentary


def _wrapped(kind: type[DBAPIError], orig: Exception) -> DBAPIError:
    return kind("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "momentary"),
    [
        (_wrapped(OperationalError, errors.LockNotAvailable()), True),  # lock_timeout
        (_wrapped(OperationalError, errors.QueryCanceled()), True),  # statement_timeout
        (_wrapped(OperationalError, errors.DeadlockDetected()), True),
        (_wrapped(OperationalError, errors.SerializationFailure()), True),
        (_wrapped(OperationalError, errors.TooManyConnections()), True),
        (_wrapped(OperationalError, errors.AdminShutdown()), True),
        (_wrapped(OperationalError, errors.ConnectionFailure()), True),  # class 08
        # No answer at all (refused, reset): no SQLSTATE.
        (_wrapped(OperationalError, psycopg.OperationalError("connection refused")), True),
        (_wrapped(IntegrityError, errors.UniqueViolation()), False),
        (_wrapped(ProgrammingError, errors.UndefinedColumn()), False),
        (_wrapped(DBAPIError, errors.DivisionByZero()), False),
    ],
)
def test_is_momentary(error: DBAPIError, momentary: bool) -> None:
    assert is_momentary(error) is momentary


def test_a_dropped_connection_is_momentary() -> None:
    dropped = DBAPIError(
        "SELECT 1", {}, psycopg.InterfaceError("closed"), connection_invalidated=True
    )
    assert is_momentary(dropped)
