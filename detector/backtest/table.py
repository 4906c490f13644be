"""A fixed-width table of result rows, as the backtest and the benchmarks print them."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO


def print_table(title: str, rows: list[dict[str, Any]], stream: TextIO | None = None) -> None:
    """Columns in the order of the first row's keys; floats to 3 significant decimals."""
    out = stream or sys.stdout
    if not rows:
        print(f"{title}: no rows", file=out)
        return
    columns = list(rows[0])
    cells = [[format_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print(f"\n{title}", file=out)
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)), file=out)
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)), file=out)


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
