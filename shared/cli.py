"""Operator commands: `python -m shared.cli seed` (alias `inkflow seed`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from shared.config import ConfigError, _normalise_db_url, load_dotenv_for_development
from shared.db import make_engine, make_session_factory, transaction


def _database_url() -> str:
    import os

    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise ConfigError("missing required setting DATABASE_URL")
    return _normalise_db_url(url)


def cmd_seed(_: argparse.Namespace) -> int:
    from shared.demo import seed_demo

    engine = make_engine(_database_url(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            ids = seed_demo(session)
    finally:
        engine.dispose()
    print(json.dumps(ids, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inkflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="create the demo artist, service, hours and client")
    seed.set_defaults(func=cmd_seed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv_for_development()
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"inkflow: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
