"""`inkflow token --artist ID | --client ID [--ttl 1h]`: a development JWT signed with
AUTH_JWT_SECRET (from the environment or `var/run.env`), the same kind the API verifies
(`shared/adapters/tokens.py`). The token alone goes to stdout, for
`TOKEN=$(inkflow token --artist …)`; what it is goes to stderr.

It needs no database and does not check that the id exists: a token for an unknown
artist or client simply owns nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta

from services.cli.errors import CliError
from shared.adapters import tokens
from shared.domain.access import Role
from shared.domain.timeutil import iso_utc

DEFAULT_TTL = "1h"
MAX_TTL = timedelta(days=30)  # a development token, not a credential to keep
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

UNSET = (
    "AUTH_JWT_SECRET is not set, so the API runs without roles (client endpoints open, "
    "management with ADMIN_API_TOKEN) and would ignore a token. Start the API with it set, "
    "e.g. `AUTH_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))') "
    'make run` (docs/development.md, "Roles"), then ask again.'
)


def ttl(text: str) -> timedelta:
    """argparse type: `90`, `90s`, `15m`, `12h`, `7d`."""
    found = _TTL.match(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 12h or 7d")
    lasting = timedelta(**{_UNITS[found[2]]: int(found[1])})
    if not timedelta(0) < lasting <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"{text!r}: between 1 second and {MAX_TTL.days} days")
    return lasting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--artist", type=uuid.UUID, metavar="ARTIST_ID", help="an artist's token")
    who.add_argument("--client", type=uuid.UUID, metavar="CLIENT_ID", help="a client's token")
    parser.add_argument(
        "--ttl", type=ttl, default=ttl(DEFAULT_TTL),
        help=f"how long it is valid: 90s, 15m, 12h, 7d (default {DEFAULT_TTL}, at most "
        f"{MAX_TTL.days}d)",
    )  # fmt: skip


def token(args: argparse.Namespace) -> int:
    secret = os.environ.get("AUTH_JWT_SECRET", "").strip()
    if not secret:
        raise CliError(UNSET)
    role, subject = (Role.ARTIST, args.artist) if args.artist else (Role.CLIENT, args.client)
    now = datetime.now(UTC)
    print(tokens.mint(secret, role, subject, now=now, ttl=args.ttl))
    print(
        f"{role.value} token for {subject}, valid until {iso_utc(now + args.ttl)}", file=sys.stderr
    )
    return 0
