"""The table printed at the end and the JSON written next to it."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class Row:
    metric: str
    value: float | int | None
    unit: str
    ratio: float | None = None  # value ÷ the baseline's same figure
    target: str = ""
    passed: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "FAIL")


def fmt(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row], sections: dict[int, str]) -> str:
    head = ("metric", "value", "unit", "× baseline", "target", "result")
    cells = [
        (
            r.metric,
            fmt(r.value),
            r.unit,
            "" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]

    def line(values: tuple[str, ...]) -> str:
        parts = [
            v.rjust(w) if i in (1, 3) else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(head), line(tuple("-" * w for w in widths))]
    for i, row in enumerate(cells):
        if i in sections:
            out.append(f"[{sections[i]}]")
        out.append(line(row))
    return "\n".join(out)


def cpu_table(stages: dict[str, dict[str, float]], *, per_request: bool = False) -> str:
    roles = ["api", "worker", "stripe", "loadgen", "postgres", "redis"]
    if not per_request:
        roles += ["bench", "other", "steal", "machine"]
    name_width = max([len("stage"), *map(len, stages)])
    out = ["stage".ljust(name_width) + "".join(r.rjust(9) for r in roles)]
    for stage, cores in stages.items():
        digits = 3 if per_request else 2
        out.append(
            stage.ljust(name_width) + "".join(f"{cores.get(r, 0.0):9.{digits}f}" for r in roles)
        )
    return "\n".join(out)


def write_json(out_dir: Path, started: datetime, document: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{started.strftime('%Y%m%dT%H%M%S')}.json"
    text = json.dumps(document, indent=2, default=str)
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [{**asdict(r), "result": r.verdict or None} for r in rows]
