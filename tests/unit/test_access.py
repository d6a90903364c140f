"""`authorize(principal, access, owner)`, the one function that decides who may do what,
held to a table written out here: every rule × every kind of principal, with the owner
known and not yet known."""

from __future__ import annotations

import uuid

import pytest

from shared.domain.access import (
    ANONYMOUS,
    GUEST,
    OPERATOR,
    Access,
    Owner,
    Principal,
    Role,
    authorize,
    guard,
)
from shared.domain.errors import DomainError, ErrorCode

ARTIST_A, ARTIST_B = uuid.uuid4(), uuid.uuid4()
CLIENT_C, CLIENT_D = uuid.uuid4(), uuid.uuid4()
# A booking of artist A for client C.
OWNER = Owner(artist_id=ARTIST_A, client_id=CLIENT_C)

# artist, client: the owner's (A, C); artist-B, client-D: others.
PRINCIPALS = {
    "operator": OPERATOR,
    "artist": Principal.artist(ARTIST_A),
    "artist-B": Principal.artist(ARTIST_B),
    "client": Principal.client(CLIENT_C),
    "client-D": Principal.client(CLIENT_D),
    # Client tokens off, and the request names no client (or not a UUID).
    "unnamed": Principal.client(None),
    "guest": GUEST,
    "anonymous": ANONYMOUS,
}

# ok: allowed; 401: UNAUTHORIZED; 403: FORBIDDEN.
WITH_OWNER = """
          operator  artist  artist-B  client  client-D  unnamed  guest  anonymous
PUBLIC    ok        ok      ok        ok      ok        ok       ok     ok
CLIENT    ok        403     403       ok      403       403      ok     401
ARTIST    ok        ok      403       403     403       403      401    401
OPERATOR  ok        403     403       403     403       403      401    401
"""
# The owner not known yet (or the route names none): the role alone decides.
OWNER_UNKNOWN = """
          operator  artist  artist-B  client  client-D  unnamed  guest  anonymous
PUBLIC    ok        ok      ok        ok      ok        ok       ok     ok
CLIENT    ok        403     403       ok      ok        ok       ok     401
ARTIST    ok        ok      ok        403     403       403      401    401
OPERATOR  ok        403     403       403     403       403      401    401
"""


def parse(table: str) -> dict[tuple[Access, str], str]:
    header, *rows = (line.split() for line in table.strip().splitlines())
    assert header == list(PRINCIPALS), header
    expected = {}
    for access, *outcomes in rows:
        assert len(outcomes) == len(header), access
        for name, outcome in zip(header, outcomes, strict=True):
            expected[(Access[access], name)] = outcome
    assert {a for a, _ in expected} == set(Access), "a rule is missing from the table"
    return expected


CASES = [
    (access, name, owner, outcome)
    for table, owner in ((WITH_OWNER, OWNER), (OWNER_UNKNOWN, None))
    for (access, name), outcome in parse(table).items()
]


def outcome_of(principal: Principal, access: Access, owner: Owner | None) -> str:
    try:
        authorize(principal, access, owner)
    except DomainError as refused:
        return {ErrorCode.UNAUTHORIZED: "401", ErrorCode.FORBIDDEN: "403"}[refused.code]
    return "ok"


@pytest.mark.parametrize(
    ("access", "name", "owner", "expected"),
    CASES,
    ids=[f"{a.name}-{n}-{'owner' if o else 'unknown'}" for a, n, o, _ in CASES],
)
def test_the_table(access: Access, name: str, owner: Owner | None, expected: str) -> None:
    assert outcome_of(PRINCIPALS[name], access, owner) == expected


def test_the_table_is_complete() -> None:
    assert len(CASES) == len(Access) * len(PRINCIPALS) * 2 == 64


def test_an_unnamed_client_owns_nothing_not_even_what_has_no_client() -> None:
    # None == None must not read as "the same client".
    assert outcome_of(Principal.client(None), Access.CLIENT, Owner(artist_id=ARTIST_A)) == "403"
    assert outcome_of(Principal(Role.ARTIST), Access.ARTIST, Owner()) == "403"


def test_an_owner_of_the_other_kind_does_not_count() -> None:
    """An artist whose id happens to be the resource's client id owns nothing by it."""
    assert outcome_of(Principal.artist(CLIENT_C), Access.ARTIST, OWNER) == "403"
    assert outcome_of(Principal.client(ARTIST_A), Access.CLIENT, OWNER) == "403"


def test_refusals_say_what_was_refused() -> None:
    with pytest.raises(DomainError) as refused:
        authorize(Principal.artist(ARTIST_B), Access.ARTIST, OWNER)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "artist" in refused.value.message
    with pytest.raises(DomainError) as refused:
        authorize(ANONYMOUS, Access.CLIENT, None)
    assert refused.value.code is ErrorCode.UNAUTHORIZED


def test_a_guard_waits_for_the_owner() -> None:
    check = guard(Principal.artist(ARTIST_A), Access.ARTIST)
    check(OWNER)
    with pytest.raises(DomainError):
        check(Owner(artist_id=ARTIST_B))
