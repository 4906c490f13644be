"""The audit report: one directory with ``report.html`` and its PNG figures, nothing else to fetch.

Every figure has the numbers it is drawn from in a table beside it, so the page can be checked and
quoted without reading values off a plot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from detector.audit import page, plots
from detector.audit.collection import AuditCollection, Labels
from detector.audit.options import ReportOptions
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
from detector.engine.records import format_timestamp

REPORT_NAME = "report.html"
TIMELINE_PNG, SCORES_PNG, LATENCY_PNG = "timeline.png", "scores.png", "latency.png"
MAX_EVENT_ROWS = 300


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


def build_report(
    collection: AuditCollection, labels: Labels, k: int = 100, *, options: ReportOptions | None = None
) -> Report:
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
        options=options or ReportOptions(),
    )


def write_report(report: Report, directory: Path, sources: Mapping[str, str]) -> Path:
    """Draw the figures and write the page into ``directory``; ``sources`` says where the data came from."""
    directory.mkdir(parents=True, exist_ok=True)
    sections = [_summary_section(report, sources)]
    if len(report.joined.times):
        plots.timeline_figure(
            report.days,
            generation_steps(report.joined),
            report.collection.events,
            report.k,
            directory / TIMELINE_PNG,
        )
        plots.score_figure(
            report.histogram, _main_thresholds(report.collection.thresholds), directory / SCORES_PNG
        )
        sections += [_daily_section(report), _events_section(report), _score_section(report)]
        if report.processing is not None:
            plots.latency_figure(
                report.joined.processing_ms, report.processing, report.lag, directory / LATENCY_PNG
            )
            sections.append(_latency_section(report, report.processing))
    else:
        sections.append("<p class='note'>No decisions matched: there is nothing to plot.</p>")
    path = directory / REPORT_NAME
    path.write_text(page.document("\n".join(sections)), encoding="utf-8")
    return path


def _summary_section(report: Report, sources: Mapping[str, str]) -> str:
    overall, collection = report.overall, report.collection
    unlabelled = overall.transactions - overall.labelled
    source_rows = [(name, value) for name, value in sources.items()]
    source_rows.append(("labels read", f"{len(report.labels.outcomes):,} transactions labelled"))
    if report.labels.invalid:
        source_rows.append(("unusable labels", f"{report.labels.invalid:,} (not the label format; ignored)"))
    if collection.unreadable:
        source_rows.append(("unreadable audit records", f"{collection.unreadable:,} (run audit verify)"))
    numbers = [
        ("decisions", page.count(overall.transactions)),
        (
            "alerts (review + block)",
            f"{overall.alerts:,} ({overall.reviews:,} review, {overall.blocks:,} block)",
        ),
        ("labelled", f"{overall.labelled:,} ({page.share(overall.labelled, overall.transactions)})"),
        ("unlabelled (excluded from precision)", f"{unlabelled:,}"),
        ("frauds among labelled", f"{overall.frauds:,}"),
        ("alert precision", page.ratio(overall.alert_precision)),
        (f"card precision@{report.k} (mean of days)", page.ratio(overall.card_precision)),
        ("average precision", page.ratio(overall.average_precision)),
        ("ROC AUC", page.ratio(report.auc)),
    ]
    types = [(kind, f"{count:,}") for kind, count in sorted(collection.record_types.items())]
    return f"""
<h2>Summary</h2>
{page.table(("input", "details"), source_rows)}
<p class="note">Transactions whose label has not arrived yet are <b>unlabelled</b>: they count in the
volumes but are left out of every precision figure, as neither a hit nor a false alarm. Recent days
have few labels yet, so their precision rests on fewer transactions.</p>
{page.table(("all days", "value"), numbers)}
<h3>Audit records by type</h3>
{page.table(("record type", "records"), types)}
"""


def _daily_section(report: Report) -> str:
    rows = [_day_row(day) for day in [*report.days, report.overall]]
    headers = (
        "day (UTC)", "decisions", "review", "block", "labelled", "frauds", "labelled alerts",
        "fraud alerts", "alert precision", f"card precision@{report.k}", "average precision",
    )  # fmt: skip
    return f"""
<h2>Daily metrics and model history</h2>
<img src="{TIMELINE_PNG}" alt="Alerts, precision and model generation per day">
<p class="note">Days are UTC calendar days of the transactions' event time. Alert precision: labelled
frauds among labelled alerts. Card precision@{report.k}: of the {report.k} cards with the highest
score that day (labelled transactions only), the share with a fraud that day, always divided by
{report.k}. Average precision: area under the precision-recall curve of the day's labelled scores.
&ldquo;–&rdquo;: nothing to measure (no labelled alert, or no labelled fraud). Each partition runs
its own model, so generations and events are per partition.</p>
{page.table(headers, rows, "totals")}
"""


def _day_row(day: PeriodMetrics) -> tuple[str, ...]:
    return (
        day.day.isoformat() if day.day else "all days",
        page.count(day.transactions),
        page.count(day.reviews),
        page.count(day.blocks),
        f"{day.labelled:,} ({page.share(day.labelled, day.transactions)})",
        page.count(day.frauds),
        page.count(day.labelled_alerts),
        page.count(day.fraud_alerts),
        page.ratio(day.alert_precision),
        page.ratio(day.card_precision),
        page.ratio(day.average_precision),
    )


def _events_section(report: Report) -> str:
    events = sorted(report.collection.events, key=lambda e: (e.time, e.partition))
    counts = Counter((e.kind, e.partition) for e in events)
    count_rows = [(kind, str(partition), f"{n:,}") for (kind, partition), n in sorted(counts.items())]
    rows = [
        (format_timestamp(e.time), str(e.partition), e.kind, str(e.generation), _detail(e.detail))
        for e in events[:MAX_EVENT_ROWS]
    ]
    more = len(events) - len(rows)
    cut = f"<p class='note'>The first {MAX_EVENT_ROWS} of {len(events):,} events; replay has them all.</p>"
    return f"""
<h2>Drift and model events</h2>
{page.table(("event", "partition", "count"), count_rows) if events else "<p>No drift or model events.</p>"}
{page.table(("event time (UTC)", "partition", "event", "model generation", "detail"), rows) if rows else ""}
{cut if more > 0 else ""}
"""


def _score_section(report: Report) -> str:
    histogram = report.histogram
    rows = [
        (
            f"{low:.2f} – {high:.2f}",
            page.count(int(legit)),
            page.count(int(fraud)),
            page.share(int(fraud), int(fraud + legit)),
        )
        for low, high, legit, fraud in zip(
            histogram.edges[:-1], histogram.edges[1:], histogram.legitimate, histogram.fraud, strict=True
        )
    ]
    thresholds = report.collection.thresholds
    note = ""
    if len(thresholds) > 1:
        pairs = ", ".join(f"{r:g}/{b:g} ({n:,} decisions)" for (r, b), n in thresholds.most_common())
        note = (
            "<p class='note'>Thresholds changed over the period (review/block):"
            f" {pairs}; the plot shows the most used.</p>"
        )
    return f"""
<h2>Score distribution</h2>
<img src="{SCORES_PNG}" alt="Score histogram of fraud and legitimate transactions">
<p class="note">Labelled transactions only; both classes use the same bins, and counts are on a log
scale so the rare frauds stay visible next to the legitimate mass.</p>
{note}
{page.table(("score bin", "legitimate", "fraud", "fraud share"), rows)}
"""


def _latency_section(report: Report, processing: Percentiles) -> str:
    rows = [_latency_row("engine processing time per decision (ms)", processing)]
    lag = report.lag
    if lag is not None and lag.realtime:
        rows.append(_latency_row("event time to audit write (s)", lag.summary))
        lag_note = (
            "The lag from a transaction's event time to its audit record's Kafka timestamp is shown"
            " because event times track the wall clock (median within an hour); it includes the"
            " payment system's and the brokers' clock skew."
        )
    elif lag is not None:
        lag_note = (
            f"The lag from event time to the audit write has a median of {lag.summary.p50:,.0f} s:"
            " event times do not track the wall clock (a replay, a backfill or a simulation), so"
            " it is not a latency and is not shown."
        )
    else:
        lag_note = "The audit records' Kafka timestamps were not available, so no end-to-end lag is shown."
    return f"""
<h2>Processing latency</h2>
<img src="{LATENCY_PNG}" alt="Distribution of processing time per decision">
<p class="note">Processing time is measured inside the detector for each transaction, from decoding
the message to the decision (features, score, policy). It leaves out time spent waiting in Kafka,
batching and the transaction commit, so it is a lower bound of the end-to-end latency. {lag_note}</p>
{page.table(("measure", "decisions", "p50", "p90", "p99", "max"), rows)}
"""


def _latency_row(name: str, summary: Percentiles) -> tuple[str, ...]:
    values = (summary.p50, summary.p90, summary.p99, summary.max)
    return (name, page.count(summary.count), *(f"{v:.3g}" for v in values))


def _main_thresholds(thresholds: Counter[tuple[float, float]]) -> tuple[float, float] | None:
    return thresholds.most_common(1)[0][0] if thresholds else None


def _detail(detail: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(detail.items()))


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
