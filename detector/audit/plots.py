"""The report's figures, drawn with matplotlib's object API into PNG files (the Agg renderer).

No pyplot: figures are plain :class:`~matplotlib.figure.Figure` objects, so there is no global
state, no display needed and nothing left open after a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from detector.audit.collection import ModelEvent
from detector.audit.quality import DAY_S, Percentiles, PeriodMetrics, ScoreHistogram, WriteLag

DPI = 110
# Event kind -> (marker, colour, legend text).
EVENT_STYLES = {
    "drift_warning": ("^", "#e6a700", "drift warning"),
    "drift_detected": ("v", "#d62728", "drift detected"),
    "background_started": ("o", "#1f77b4", "background model started"),
    "background_discarded": ("x", "#7f7f7f", "background model discarded"),
    "model_swapped": ("*", "#2ca02c", "model swapped"),
    "model_reset": ("s", "#000000", "model reset"),
    "score_drift": ("d", "#9467bd", "score drift (data drift, reported only)"),
}
_OTHER_EVENT = (".", "#7f7f7f", "other event")


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def timeline_figure(
    days: Sequence[PeriodMetrics],
    steps: Mapping[int, Sequence[tuple[float, int]]],
    events: Sequence[ModelEvent],
    k: int,
    path: Path,
) -> None:
    """Alerts, daily precision and the models' history, one above the other on one time axis."""
    lanes = sorted({*steps, *(e.partition for e in events)})
    figure = Figure(figsize=(11, 8 + 0.35 * len(lanes)), dpi=DPI, layout="constrained")
    volume, precision, models = figure.subplots(
        3, 1, sharex=True, height_ratios=(1, 1, 0.5 + 0.25 * len(lanes))
    )
    noon = [datetime(d.day.year, d.day.month, d.day.day, 12, tzinfo=UTC) for d in days if d.day]
    _alert_bars(volume, noon, days)
    _precision_lines(precision, noon, days, k)
    _model_lanes(models, lanes, steps, events)
    if noon:
        models.set_xlim(noon[0] - timedelta(hours=12), noon[-1] + timedelta(hours=12))
    locator = AutoDateLocator()
    models.xaxis.set_major_locator(locator)
    models.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))
    models.set_xlabel("event time (UTC)")
    for axes in (volume, precision):
        axes.grid(alpha=0.3)
    models.grid(alpha=0.3, axis="x")
    figure.savefig(path)


def _alert_bars(axes: Axes, noon: list[datetime], days: Sequence[PeriodMetrics]) -> None:
    reviews = np.array([d.reviews for d in days])
    # matplotlib's stubs leave out dates, which its unit converters take
    axes.bar(noon, reviews, width=0.8, color="#ff9f1c", label="review")  # type: ignore[arg-type]
    axes.bar(noon, [d.blocks for d in days], width=0.8, bottom=reviews, color="#d62728", label="block")  # type: ignore[arg-type]
    axes.set_title("Alerts per day (review + block decisions, labelled or not)")
    axes.set_ylabel("alerts per day")
    axes.legend(loc="upper left")


def _precision_lines(axes: Axes, noon: list[datetime], days: Sequence[PeriodMetrics], k: int) -> None:
    for values, style, colour, label in (
        ([d.alert_precision for d in days], "o-", "#1f77b4", "alert precision (labelled alerts)"),
        ([d.card_precision for d in days], "s-", "#ff7f0e", f"card precision@{k}"),
        (
            [d.card_precision_ceiling for d in days],
            ":",
            "#ff7f0e",
            f"card precision@{k} ceiling (best possible)",
        ),
        ([d.average_precision for d in days], "^-", "#2ca02c", "average precision"),
    ):
        axes.plot(noon, values, style, color=colour, label=label)  # type: ignore[arg-type]  # dates, as above
    axes.set_ylim(-0.02, 1.02)
    axes.set_title("Daily precision (labelled transactions only; gaps: nothing labelled to measure)")
    axes.set_ylabel("share (0 to 1)")
    axes.legend(loc="upper left")


def _model_lanes(
    axes: Axes,
    lanes: list[int],
    steps: Mapping[int, Sequence[tuple[float, int]]],
    events: Sequence[ModelEvent],
) -> None:
    """One lane per partition: its model generations as shaded spans, its events as markers."""
    row = {partition: i for i, partition in enumerate(lanes)}
    shades = colormaps["Pastel2"]
    generations: set[int] = set()
    for partition, points in steps.items():
        for (start, generation), (end, _) in pairwise(points):
            generations.add(generation)
            axes.broken_barh(
                [(date2num(_moment(start)), (end - start) / DAY_S)],
                (row[partition] - 0.3, 0.6),
                color=shades(generation % shades.N),
                edgecolor="#888888",
            )
    kinds = sorted({e.kind for e in events})
    # Each kind at its own height in the lane: a drift and the background model it starts coincide.
    heights = np.linspace(-0.2, 0.2, len(kinds)) if len(kinds) > 1 else [0.0] * len(kinds)
    for kind, height in zip(kinds, heights, strict=True):
        marker, colour, label = EVENT_STYLES.get(kind, _OTHER_EVENT)
        chosen = [e for e in events if e.kind == kind]
        axes.scatter(
            [_moment(e.time) for e in chosen],  # type: ignore[arg-type]  # dates: see _alert_bars
            [row[e.partition] + height for e in chosen],
            marker=marker,
            color=colour,
            s=110 if marker == "*" else 50,
            zorder=3,
            label=f"{label} ({len(chosen)})",
        )
    for generation in sorted(generations):
        axes.add_patch(
            Rectangle((0, 0), 0, 0, color=shades(generation % shades.N), label=f"generation {generation}")
        )
    axes.set_yticks(range(len(lanes)), [f"partition {p}" for p in lanes])
    axes.set_ylim(len(lanes) - 0.5, -0.5)
    axes.set_title("Model generation (shaded) and drift and model events, per partition")
    axes.figure.legend(
        *axes.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="small"
    )


def score_figure(histogram: ScoreHistogram, thresholds: tuple[float, float] | None, path: Path) -> None:
    """Score distribution of labelled fraud and legitimate transactions, on shared bins."""
    figure = Figure(figsize=(10, 5), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    centres = (histogram.edges[:-1] + histogram.edges[1:]) / 2
    for counts, colour, label in (
        (histogram.legitimate, "#1f77b4", "legitimate"),
        (histogram.fraud, "#d62728", "fraud"),
    ):
        axes.hist(
            centres,
            bins=histogram.edges,  # type: ignore[arg-type]  # an array, which matplotlib's stubs leave out
            weights=counts,
            histtype="stepfilled",
            alpha=0.45,
            color=colour,
            edgecolor=colour,
            linewidth=1.5,
            log=True,
            label=f"{label} ({int(counts.sum()):,} labelled transactions)",
        )
    if thresholds is not None:
        review, block = thresholds
        axes.axvline(review, color="#ff9f1c", linestyle="--", label=f"review threshold {review:g}")
        axes.axvline(block, color="#d62728", linestyle="--", label=f"block threshold {block:g}")
    axes.set_xlim(0, 1)
    axes.set_title("Score distribution of labelled transactions")
    axes.set_xlabel(f"fraud score (bins of {histogram.edges[1] - histogram.edges[0]:g})")
    axes.set_ylabel("transactions (log scale)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path)


def latency_figure(
    processing_ms: np.ndarray, processing: Percentiles, lag: WriteLag | None, path: Path
) -> None:
    """Engine processing time per decision; and event-to-audit lag when event times are real time."""
    realtime = lag is not None and lag.realtime
    figure = Figure(figsize=(10, 8.5 if realtime else 4.8), dpi=DPI, layout="constrained")
    panels = figure.subplots(2 if realtime else 1, 1, squeeze=False)[:, 0]
    values = processing_ms[np.isfinite(processing_ms) & (processing_ms > 0)]
    low = max(float(values.min()), 1e-3) if len(values) else 1e-3
    edges = np.geomspace(low, max(float(values.max()), low * 1.01) if len(values) else 1.0, 50)
    _distribution(panels[0], values, edges, processing, "ms")
    panels[0].set_xscale("log")
    panels[0].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    panels[0].xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    panels[0].xaxis.set_minor_formatter(NullFormatter())
    panels[0].set_title(
        "Engine processing time per decision (decode, features, score, decide; excludes Kafka)"
    )
    panels[0].set_xlabel("processing time (ms, log scale)")
    if realtime and lag is not None:
        _distribution(panels[1], lag.lags_s, 50, lag.summary, "s")
        panels[1].set_title("Event time to audit record written (Kafka timestamp; includes clock skew)")
        panels[1].set_xlabel("lag (s)")
    figure.savefig(path)


def _distribution(
    axes: Axes, values: np.ndarray, bins: int | np.ndarray, summary: Percentiles, unit: str
) -> None:
    # matplotlib's stubs take no array for bins, which matplotlib does
    axes.hist(values, bins=bins, color="#1f77b4", alpha=0.7, label=f"{summary.count:,} decisions")  # type: ignore[arg-type]
    for value, style, name in ((summary.p50, "-", "p50"), (summary.p99, "--", "p99")):
        axes.axvline(value, color="#d62728", linestyle=style, label=f"{name} = {value:.3g} {unit}")
    axes.set_ylabel("decisions")
    axes.grid(alpha=0.3)
    axes.legend()
