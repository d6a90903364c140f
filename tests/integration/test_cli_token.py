"""`inkflow token`: the development token it prints is one the API takes, for that artist
or client only; without AUTH_JWT_SECRET it says how to turn roles on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from services.cli.main import main
from tests.factories import make_world

SECRET = "cli-token-test-jwt-secret-".ljust(64, "s")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No var/run.env and no .env of this checkout: only what the test sets."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INKFLOW_RUN_ENV", str(tmp_path / "absent.env"))
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    return monkeypatch


def minted(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["token", *args]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert "\n" not in token, out  # the token alone on stdout: TOKEN=$(inkflow token …)
    assert "valid until" in err
    return token


def test_an_artists_token_works_as_that_artist(
    cli_env: pytest.MonkeyPatch, capsys: Any, make_app: Any, sessions: Any
) -> None:
    cli_env.setenv("AUTH_JWT_SECRET", SECRET)
    mine, other = make_world(sessions), make_world(sessions)
    token = minted(capsys, "--artist", mine.artist_id, "--ttl", "10m")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["role"], claims["sub"], claims["exp"] - claims["iat"]) == (
        "artist",
        mine.artist_id,
        600,
    )
    http = make_app(auth_jwt_secret=SECRET).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(f"/api/admin/artists/{mine.artist_id}", headers=headers).status_code == 200
    assert http.get(f"/api/admin/artists/{other.artist_id}", headers=headers).status_code == 403

    client = minted(capsys, "--client", mine.client_id)
    listed = http.get(
        f"/api/clients/{mine.client_id}/bookings", headers={"Authorization": f"Bearer {client}"}
    )
    assert listed.status_code == 200


def test_without_a_secret_it_says_how_to_turn_roles_on(
    cli_env: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert main(["token", "--artist", "5b3c0b7e-8f3c-4a53-9d47-3c1e1f0d2a11"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("inkflow: AUTH_JWT_SECRET is not set")
    assert "docs/development.md" in err
    assert err.count("\n") == 1  # one line


def test_what_it_refuses(cli_env: pytest.MonkeyPatch, capsys: Any) -> None:
    cli_env.setenv("AUTH_JWT_SECRET", "too-short")
    assert main(["token", "--client", "5b3c0b7e-8f3c-4a53-9d47-3c1e1f0d2a11"]) == 1
    assert "at least 32 bytes" in capsys.readouterr().err
    cli_env.setenv("AUTH_JWT_SECRET", SECRET)
    for args in (
        ["--artist", "not-an-id"],
        ["--artist", "5b3c0b7e-8f3c-4a53-9d47-3c1e1f0d2a11", "--ttl", "31d"],
        ["--artist", "5b3c0b7e-8f3c-4a53-9d47-3c1e1f0d2a11", "--ttl", "soon"],
        ["--artist", "5b3c0b7e-8f3c-4a53-9d47-3c1e1f0d2a11", "--client", "x"],
        [],
    ):
        with pytest.raises(SystemExit) as usage:
            main(["token", *args])
        assert usage.value.code == 2, args
        capsys.readouterr()
