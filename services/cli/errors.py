"""What a command reports instead of a traceback."""

from __future__ import annotations


class CliError(Exception):
    """The command cannot go on: its message is printed on one line, exit status 1."""
