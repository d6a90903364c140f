"""The migrations build exactly the schema the models declare, and go down and up again."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config

from tests import support


def _config(url: str) -> Config:
    config = Config(str(support.ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(support.ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    os.environ["DATABASE_URL"] = url
    return config


def test_models_match_migrations_and_downgrade_round_trips():
    url = support.create_database()
    try:
        config = _config(url)
        command.check(config)  # raises when autogenerate would find a difference
        command.downgrade(config, "base")
        command.upgrade(config, "head")
        command.check(config)
    finally:
        os.environ.pop("DATABASE_URL", None)
        support.drop_database(url)
