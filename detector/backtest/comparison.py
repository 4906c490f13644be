"""The comparison of a finished backtest: tables on stdout, and the same rows in comparison.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson

from detector.backtest.metrics import Period, in_period, quality, rule_quality
from detector.backtest.running import Backtest
from detector.backtest.table import print_table
from detector.engine.records import format_timestamp

COMPARISON = "comparison.json"


def compare(backtest: Backtest, chosen: list[Period], k: int) -> dict[str, Any]:
    """Rows per period (the first is the whole chosen span), per replayed rule, and the run's counts."""
    truth = backtest.truth.columns()
    document: dict[str, Any] = {
        "events": backtest.events,
        "transactions": len(backtest.truth),
        "k": k,
        "periods": [],
        "rules": [],
    }
    for period in chosen:
        mask = in_period(truth["times"], period)
        rows = []
        for run in backtest.runs:
            row: dict[str, Any] = {"config": run.variant.name}
            row.update(quality(truth, run.results(), mask, k))
            if period is chosen[0]:
                row["events/s"] = backtest.events / run.seconds if run.seconds else float("nan")
            rows.append(row)
        document["periods"].append(
            {
                "period": period.name,
                "from": format_timestamp(period.start),
                "to": format_timestamp(period.end),
                "rows": rows,
            }
        )
    if chosen:
        mask = in_period(truth["times"], chosen[0])
        for run in backtest.runs:
            threshold = run.variant.config.policy.review_threshold
            for name, indices in run.fired.items():
                fired = _mask(len(backtest.truth), indices)
                row = {"config": run.variant.name, "rule": name}
                row.update(rule_quality(truth, run.results(), fired, threshold, mask))
                document["rules"].append(row)
    document["rejected"] = {run.variant.name: dict(run.rejected) for run in backtest.runs if run.rejected}
    return document


def print_comparison(document: dict[str, Any], stream: TextIO | None = None) -> None:
    for period in document["periods"]:
        title = f"{period['period']}: {period['from']} to {period['to']}"
        print_table(title, period["rows"], stream)
    if document["rules"]:
        print_table("replayed rules (precision on labelled transactions)", document["rules"], stream)


def write_comparison(document: dict[str, Any], out: Path) -> Path:
    path = out / COMPARISON
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def _mask(size: int, indices: Any) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[np.frombuffer(indices, dtype=np.int64)] = True
    return mask
