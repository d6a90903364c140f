"""Engine and session factories, the declarative base and its naming convention."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names: migrations and error handling (23P01 on the exclusion
# constraint) refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    lock_timeout_ms: int = 5000,
    statement_timeout_ms: int = 15000,
) -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: it costs a round trip on every checkout (measured: a third of a
        # cached availability answer). After a database restart, SQLAlchemy sees the first
        # failed statement as a disconnect and invalidates the whole pool, so one request
        # per process fails (500, or a retried task) and the next ones reconnect.
        pool_pre_ping=False,
        pool_recycle=1800,
        # Errors (their messages, logged tracebacks, a task's stored `last_error`) show
        # the SQL but never its parameters: client emails and names are bound values.
        hide_parameters=True,
        # A statement stuck behind a lock must not hold a web worker forever.
        connect_args={
            "options": (
                f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}"
            )
        },
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


_ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def advisory_xact_lock(session: Session, key: str) -> None:
    """Serialise transactions that name the same key, until they end."""
    session.execute(_ADVISORY_XACT_LOCK, {"key": key})


# SQLSTATEs that mean "the database could not do it just now; the same request may succeed
# in a moment": lock_timeout (55P03), statement_timeout or cancel (57014), deadlock (40P01),
# serialization failure (40001), too many connections (53300), server shutting down or
# starting (57P01-57P03). Class 08 is the connection failing.
_MOMENTARY_SQLSTATES = frozenset(
    {"55P03", "57014", "40P01", "40001", "53300", "57P01", "57P02", "57P03"}
)


def is_momentary(error: DBAPIError) -> bool:
    """A database failure worth retrying later rather than a bug: the API answers it with
    503 and Retry-After, never 500."""
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is None:
        # No answer from the server at all (refused, reset, timed out).
        return isinstance(error, OperationalError | InterfaceError)
    return sqlstate in _MOMENTARY_SQLSTATES or str(sqlstate).startswith("08")


def describe_error(error: BaseException, limit: int = 2000) -> str:
    """A failure for a log line or a `last_error` column: its type and the database's
    own message, without the SQL statement or its parameters."""
    if isinstance(error, StatementError) and error.orig is not None:
        orig = error.orig
        sqlstate = getattr(orig, "sqlstate", None)
        diag = getattr(orig, "diag", None)
        message = getattr(diag, "message_primary", None) or str(orig).split("\n")[0]
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        text = f"{type(error).__name__}: {type(orig).__name__}{code}: {message}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text[:limit]
