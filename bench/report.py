"""Shared output for the benchmark scripts: a fixed-width table on stdout and the same rows as JSON."""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

import orjson


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Columns in the order of the first row's keys; floats to 3 significant decimals."""
    if not rows:
        print(f"{title}: no rows")
        return
    columns = list(rows[0])
    cells = [[_format(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def write_json(path: str | Path, benchmark: str, rows: list[dict[str, Any]], **context: Any) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": benchmark, "machine": platform.platform(), "python": platform.python_version()}
    document.update(context)
    document["rows"] = rows
    target.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\nwrote {target}")


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
