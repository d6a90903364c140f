"""Where the CLI's settings come from: the real environment first, then `var/run.env`
(written by `make run` with the settings it chose), then `.env`.

`var/run.env` is looked for in the current directory, then in the checkout the package
lives in (an editable install), unless INKFLOW_RUN_ENV names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

from services.cli.errors import CliError
from shared.config import load_dotenv_for_development

RUN_ENV = Path("var") / "run.env"
_CHECKOUT = Path(__file__).resolve().parents[2]


def run_env_path() -> Path | None:
    named = os.environ.get("INKFLOW_RUN_ENV", "").strip()
    if named:
        return Path(named)
    for base in (Path.cwd(), _CHECKOUT):
        candidate = base / RUN_ENV
        if candidate.is_file():
            return candidate
    return None


def load() -> Path | None:
    """Fill in what the environment lacks; returns the run.env file read, if any."""
    path = run_env_path()
    if path is not None and path.is_file():
        load_dotenv(path, override=False)
    load_dotenv_for_development()
    return path


def _get(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What the development commands talk to."""

    api_url: str
    admin_token: str
    stripe_api_base: str | None  # None: Stripe itself
    stripe_secret_key: str
    stripe_publishable_key: str | None
    emulator_url: str | None  # the emulator's control API, when Stripe is the emulator
    auth_jwt_secret: str | None

    @classmethod
    def from_env(cls) -> Endpoints:
        api = _get("INKFLOW_API_URL")
        if api is None:
            port = _get("PORT") or "8000"
            api = f"http://127.0.0.1:{port}"
        token, secret = _get("ADMIN_API_TOKEN"), _get("STRIPE_SECRET_KEY")
        if token is None or secret is None:
            missing = [
                n for n, v in (("ADMIN_API_TOKEN", token), ("STRIPE_SECRET_KEY", secret)) if not v
            ]
            raise CliError(
                f"missing setting(s) {', '.join(missing)}: start `make run` (it writes "
                f"{RUN_ENV}) or set them in the environment"
            )
        base = _get("STRIPE_API_BASE")
        return cls(
            api_url=api.rstrip("/"),
            admin_token=token,
            stripe_api_base=base.rstrip("/") if base else None,
            stripe_secret_key=secret,
            stripe_publishable_key=_get("STRIPE_PUBLISHABLE_KEY"),
            emulator_url=(_get("STRIPE_EMULATOR_URL") or base or "").rstrip("/") or None,
            auth_jwt_secret=_get("AUTH_JWT_SECRET"),
        )
