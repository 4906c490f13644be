"""The demo's results: the analyst report from the audit topic, scored against the simulator's
ground truth, and the run in ten lines."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from detector.audit.collection import Labels, collect
from detector.audit.quality import DAY_S, FRAUD, Joined
from detector.audit.reader import TopicReader
from detector.audit.report import REPORT_NAME, Report, build_report, write_report
from detector.audit.selection import RecordFilter
from detector.engine import outputs
from detector.evaluation import average_precision, roc_auc
from detector.service.settings import ServiceSettings
from devkit.demo_progress import DRIFT_SIGNALS, Reading
from devkit.demo_stream import DRIFT_DAY, StreamThread


def read_report(
    client: dict[str, str], settings: ServiceSettings, stream: StreamThread, output: Path
) -> Report:
    """The analyst report from the audit topic, with the simulator's ground truth as labels."""
    labels = Labels(outcomes=stream.truth)
    with TopicReader(client, settings.audit_topic) as reader:
        collection = collect(reader.messages(), RecordFilter(), explain=labels.frauds())
    report = build_report(collection, labels)
    sources = {
        "audit topic": f"{settings.audit_topic} (demo broker)",
        "labels": "the simulator's ground truth (every transaction, not only the labelled ones)",
        "event time": "all",
    }
    write_report(report, output / "report", sources)
    return report


def summary(report: Report, stream: StreamThread, final: Reading, output: Path) -> str:
    """The run in ten lines: volumes, outcomes, drift and how well the scores ranked the fraud."""
    collection, joined = report.collection, report.joined
    outcomes = Counter(collection.outcomes)
    events = Counter(event.kind for event in collection.events)
    drift_day = stream.start_time + DRIFT_DAY * DAY_S
    signals = sorted(event.time for event in collection.events if event.kind in DRIFT_SIGNALS)
    after = [moment for moment in signals if moment >= drift_day]
    first_after = (
        f"; the first after day {DRIFT_DAY:.0f} on day {stream.day_of(after[0]):.1f}" if after else ""
    )
    transactions = len(stream.truth)
    labels = stream.report.delivered[stream.labels_topic] if stream.report else 0
    rows = {
        "simulated": f"{stream.day:.1f} event-time days: {transactions:,} transactions"
        f" ({sum(stream.truth.values()) / max(transactions, 1):.2%} fraud) and {labels:,} labels",
        "decided": f"{len(joined.times):,} transactions; {final.consumed / max(final.seconds, 1.0):,.0f}"
        f" input records a second over {final.seconds:.0f}s",
        "decisions": ", ".join(f"{name} {outcomes[name]:,}" for name in ("approve", "review", "block")),
        "dead letters": f"{collection.record_types['rejected']:,}",
        "drift signals": f"{len(signals)} warnings and drifts{first_after}",
        "model changes": f"{events[outputs.MODEL_SWAPPED]} swaps, {events[outputs.MODEL_RESET]} resets;"
        f" highest generation {final.generation:.0f}",
        "prequential AUC": f"{report.auc:.3f} overall (AP {report.overall.average_precision:.3f});"
        f" {_ranking(joined, joined.times < drift_day)} before day {DRIFT_DAY:.0f},"
        f" {_ranking(joined, joined.times >= drift_day)} after",
        "report": str(output / "report" / REPORT_NAME),
        "detector log": str(output / "detector.log"),
    }
    width = max(map(len, rows))
    return "\n".join(["", "Demo summary", *(f"  {name:<{width}}  {value}" for name, value in rows.items())])


def _ranking(joined: Joined, rows: np.ndarray) -> str:
    """AUC and average precision of the scores over ``rows`` against the ground truth."""
    rows = rows & joined.labelled
    fraud, scores = joined.labels[rows] == FRAUD, joined.scores[rows]
    auc = roc_auc(fraud, scores)
    return "n/a" if math.isnan(auc) else f"{auc:.3f} (AP {average_precision(fraud, scores):.3f})"
