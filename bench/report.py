"""Shared output for the benchmark scripts: a fixed-width table on stdout and the same rows as JSON."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import orjson

from detector.backtest.table import print_table

__all__ = ["print_table", "quantile", "write_json"]


def write_json(path: str | Path, benchmark: str, rows: list[dict[str, Any]], **context: Any) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "benchmark": benchmark,
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    document.update(context)
    document["rows"] = rows
    target.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\nwrote {target}")


def quantile(values: list[float], q: float) -> float:
    """The value at quantile ``q`` of ``values`` (nearest rank), NaN for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
