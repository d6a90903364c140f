"""Logging configured by the process entry points (never at import time)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    # The Stripe SDK logs two INFO lines per API call: request boilerplate, DEBUG here.
    demote("stripe", "message='Request to Stripe api'", "message='Stripe API response'")
    root = logging.getLogger()
    if getattr(root, "_inkflow_configured", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    root._inkflow_configured = True  # type: ignore[attr-defined]


class Demote(logging.Filter):
    """Shows a library's routine INFO lines (those starting with one of `prefixes`) at
    DEBUG only: a log at INFO keeps one line per business event, not per task or tick."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and str(record.msg).startswith(self.prefixes):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def demote(logger_name: str, *prefixes: str) -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, Demote) and f.prefixes == prefixes for f in logger.filters):
        logger.addFilter(Demote(*prefixes))
