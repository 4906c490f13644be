"""The report's overview sections: summary, daily metrics, drift and model events, scores, latency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from detector.audit import page
from detector.audit.quality import Percentiles, PeriodMetrics
from detector.engine.records import format_timestamp

if TYPE_CHECKING:
    from detector.audit.report import Report

TIMELINE_PNG, SCORES_PNG, LATENCY_PNG = "timeline.png", "scores.png", "latency.png"
MAX_EVENT_ROWS = 300


def summary_section(report: Report, sources: Mapping[str, str]) -> str:
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
        (
            f"card precision@{report.k} (mean of days)",
            f"{page.ratio(overall.card_precision)} (ceiling {page.ratio(overall.card_precision_ceiling)})",
        ),
        (
            "frauds scored below the review threshold",
            f"{report.missed.missed:,} of {report.missed.frauds:,}"
            f" ({page.money(report.missed.missed_amount)} of {page.money(report.missed.fraud_amount)})",
        ),
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


def daily_section(report: Report) -> str:
    rows = [_day_row(day) for day in [*report.days, report.overall]]
    headers = (
        "day (UTC)", "decisions", "review", "block", "labelled", "frauds", "labelled alerts",
        "fraud alerts", "alert precision", f"card precision@{report.k}", "ceiling", "average precision",
    )  # fmt: skip
    return f"""
<h2>Daily metrics and model history</h2>
<img src="{TIMELINE_PNG}" alt="Alerts, precision and model generation per day">
<p class="note">Days are UTC calendar days of the transactions' event time. Alert precision: labelled
frauds among labelled alerts. Card precision@{report.k}: of the {report.k} cards with the highest
score that day (labelled transactions only), the share with a fraud that day, always divided by
{report.k}; its ceiling is the best value possible with that day's frauds (every compromised card
ranked first), below 1 on a day with fewer than {report.k} compromised cards among the labelled, so
a card precision is read against it. Average precision: area under the precision-recall curve of
the day's labelled scores.
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
        page.ratio(day.card_precision_ceiling),
        page.ratio(day.average_precision),
    )


def events_section(report: Report, min_score_shift: float) -> str:
    material = report.events
    events = sorted(material.events, key=lambda e: (e.time, e.partition))
    counts = Counter((e.kind, e.partition) for e in events)
    count_rows = [(kind, str(partition), f"{n:,}") for (kind, partition), n in sorted(counts.items())]
    rows = [
        (format_timestamp(e.time), str(e.partition), e.kind, str(e.generation), _detail(e.detail))
        for e in events[:MAX_EVENT_ROWS]
    ]
    more = len(events) - len(rows)
    cut = f"<p class='note'>The first {MAX_EVENT_ROWS} of {len(events):,} events; replay has them all.</p>"
    small = sum(material.small_score_drifts.values())
    left_out = (
        f"<p class='note'>{small:,} score-drift events moved the mean score by less than"
        f" {min_score_shift:.0%} and are not listed or plotted (--min-score-shift): too small to"
        " change which transactions pass a threshold.</p>"
    )
    return f"""
<h2>Drift and model events</h2>
<p class="note">Score drift is data drift (the mean score moved, no labels needed): reported, never
acted on. It is listed when the mean score moved by at least {min_score_shift:.0%} of its earlier
value.</p>
{page.table(("event", "partition", "count"), count_rows) if events else "<p>No drift or model events.</p>"}
{left_out if small else ""}
{page.table(("event time (UTC)", "partition", "event", "model generation", "detail"), rows) if rows else ""}
{cut if more > 0 else ""}
"""


def score_section(report: Report) -> str:
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


def latency_section(report: Report, processing: Percentiles) -> str:
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


def _detail(detail: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(detail.items()))


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
