"""The audit report: one directory with ``report.html`` and its PNG figures, nothing else to fetch.

Every figure has the numbers it is drawn from in a table beside it, so the page can be checked and
quoted without reading values off a plot. The sections: :mod:`detector.audit.overview` (volumes,
precision, events, scores, latency) and :mod:`detector.audit.investigation` (missed fraud, reason
codes and rules, the review queue).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from detector.audit import investigation, overview, page, plots
from detector.audit.collection import AuditCollection, Labels
from detector.audit.findings import (
    Case,
    CodeStats,
    MaterialEvents,
    MissedFraud,
    material_events,
    missed_fraud,
    reason_stats,
    review_queue,
)
from detector.audit.options import ReportOptions
from detector.audit.overview import LATENCY_PNG, SCORES_PNG, TIMELINE_PNG
from detector.audit.quality import (
    Joined,
    Percentiles,
    PeriodMetrics,
    ScoreHistogram,
    WriteLag,
    daily_metrics,
    generation_steps,
    join,
    overall_auc,
    percentiles,
    period_metrics,
    score_histogram,
    write_lag,
)

REPORT_NAME = "report.html"
__all__ = [
    "LATENCY_PNG",
    "REPORT_NAME",
    "SCORES_PNG",
    "TIMELINE_PNG",
    "Report",
    "build_report",
    "write_report",
]


@dataclass(frozen=True)
class Report:
    """Every number the page shows."""

    collection: AuditCollection
    labels: Labels
    joined: Joined
    k: int
    days: list[PeriodMetrics]
    overall: PeriodMetrics
    auc: float
    histogram: ScoreHistogram
    processing: Percentiles | None
    lag: WriteLag | None
    options: ReportOptions
    missed: MissedFraud
    reasons: list[CodeStats]
    queue: list[tuple[date, list[Case]]]
    events: MaterialEvents  # the model events worth listing


def build_report(
    collection: AuditCollection, labels: Labels, k: int = 100, *, options: ReportOptions | None = None
) -> Report:
    """``collection`` should have been read with ``explain=labels.frauds()`` for the missed cases'
    features."""
    options = options or ReportOptions()
    joined = join(collection, labels.outcomes)
    return Report(
        collection=collection,
        labels=labels,
        joined=joined,
        k=k,
        days=daily_metrics(joined, k),
        overall=period_metrics(joined, slice(None), k, None),
        auc=overall_auc(joined),
        histogram=score_histogram(joined),
        processing=percentiles(joined.processing_ms),
        lag=write_lag(joined),
        options=options,
        missed=missed_fraud(collection, joined, options.missed_cases),
        reasons=reason_stats(collection, joined),
        queue=review_queue(collection, joined, options.queue_per_day, options.queue_days),
        events=material_events(collection.events, options.min_score_shift),
    )


def write_report(report: Report, directory: Path, sources: Mapping[str, str]) -> Path:
    """Draw the figures and write the page into ``directory``; ``sources`` says where the data came from."""
    directory.mkdir(parents=True, exist_ok=True)
    options = report.options
    sections = [overview.summary_section(report, sources)]
    if len(report.joined.times):
        plots.timeline_figure(
            report.days,
            generation_steps(report.joined),
            report.events.events,
            report.k,
            directory / TIMELINE_PNG,
        )
        sections += [
            investigation.missed_section(report.missed, report.overall.labelled),
            investigation.queue_section(report.queue, options),
            investigation.reasons_section(report.reasons, report.overall.transactions),
            overview.daily_section(report),
            overview.events_section(report, options.min_score_shift),
        ]
        if report.overall.labelled:
            plots.score_figure(
                report.histogram, _main_thresholds(report.collection.thresholds), directory / SCORES_PNG
            )
            sections.append(overview.score_section(report))
        if report.processing is not None:
            plots.latency_figure(
                report.joined.processing_ms, report.processing, report.lag, directory / LATENCY_PNG
            )
            sections.append(overview.latency_section(report, report.processing))
    else:
        sections.append("<p class='note'>No decisions matched: there is nothing to plot.</p>")
    path = directory / REPORT_NAME
    path.write_text(page.document("\n".join(sections)), encoding="utf-8")
    return path


def _main_thresholds(thresholds: Counter[tuple[float, float]]) -> tuple[float, float] | None:
    return thresholds.most_common(1)[0][0] if thresholds else None
