"""The artists' and clients' JWTs: what `inkflow token` mints, the API verifies; anything
else is refused with a reason, never guessed at."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared.adapters import tokens
from shared.config import ConfigError
from shared.domain.access import Principal, Role

SECRET = "unit-test-jwt-secret-".ljust(48, "s")
ID = uuid.uuid4()


def signed(claims: dict[str, object], secret: str = SECRET) -> str:
    """Signed as given (PyJWT's encode would check the claims)."""
    return jwt.api_jws.encode(json.dumps(claims).encode(), secret, "HS256")


def later(seconds: int = 300) -> int:
    """An `exp` from the time the test runs (parameters are built when it is collected)."""
    return int(datetime.now(UTC).timestamp()) + seconds


@pytest.mark.parametrize("role", [Role.ARTIST, Role.CLIENT])
def test_minted_tokens_verify_as_their_principal(role: Role) -> None:
    token = tokens.mint(SECRET, role, ID, now=datetime.now(UTC), ttl=timedelta(hours=1))
    assert tokens.verify(SECRET, token) == Principal(role, ID)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["role"] == role.value
    assert claims["exp"] - claims["iat"] == 3600


def test_a_token_without_a_role_is_a_clients() -> None:
    """Client tokens issued before roles keep working."""
    assert tokens.verify(SECRET, signed({"sub": str(ID), "exp": later()})) == Principal.client(ID)


# The `exp` is added when the test runs (seconds from then; None: none), not when the
# parameters are collected: a long suite would otherwise find them expired.
@pytest.mark.parametrize(
    ("claims", "expires_in", "reason"),
    [
        ({"sub": str(ID), "role": "operator"}, 300, "role"),
        ({"sub": str(ID), "role": "admin"}, 300, "role"),
        ({"sub": str(ID), "role": "ARTIST"}, 300, "role"),
        ({"sub": str(ID), "role": ["artist"]}, 300, "role"),
        ({"sub": str(ID), "role": None}, 300, "role"),
        ({"sub": "client-42"}, 300, "subject"),
        ({"sub": ""}, 300, "subject"),
        ({"sub": str(ID)}, None, "invalid"),  # no exp
        ({}, 300, "invalid"),  # no sub
        ({"sub": str(ID)}, -60, "invalid"),  # expired past the leeway
        ({"sub": 12345}, 300, "invalid"),
    ],
)
def test_what_is_refused(claims: dict[str, object], expires_in: int | None, reason: str) -> None:
    if expires_in is not None:
        claims = {**claims, "exp": later(expires_in)}
    with pytest.raises(tokens.InvalidToken, match=reason):
        tokens.verify(SECRET, signed(claims))


def test_another_secret_or_algorithm_is_refused() -> None:
    claims = {"sub": str(ID), "exp": later(), "role": "artist"}
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(SECRET, signed(claims, secret="another-secret-".ljust(48, "x")))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(SECRET, jwt.encode(claims, SECRET.ljust(64, "y"), algorithm="HS512"))
    unsigned = jwt.api_jws.encode(json.dumps(claims).encode(), None, "none")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(SECRET, unsigned)


def test_minting_needs_a_long_enough_secret_and_a_jwt_role() -> None:
    with pytest.raises(ConfigError, match="AUTH_JWT_SECRET must be at least 32 bytes"):
        tokens.mint("short", Role.ARTIST, ID, now=datetime.now(UTC), ttl=timedelta(hours=1))
    with pytest.raises(ValueError, match="operator"):
        tokens.mint(SECRET, Role.OPERATOR, ID, now=datetime.now(UTC), ttl=timedelta(hours=1))
