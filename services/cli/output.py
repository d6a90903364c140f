"""How commands print: aligned tables for people, JSON lines with --json for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned columns under a header, one line each (None shows as "-")."""
    cells = [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def json_lines(rows: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(json.dumps(row, default=str) for row in rows)


CELL = 80  # longer values (an error with its SQL) are cut: --json has them whole


def _text(value: Any) -> str:
    if value is None:
        return "-"
    text = " ".join(str(value).split())
    return text if len(text) <= CELL else text[: CELL - 1] + "…"
