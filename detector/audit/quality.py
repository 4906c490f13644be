"""The numbers of the audit report: decisions joined with their labels, per event-time day (UTC).

Only labelled transactions count in precision figures: a transaction whose label has not arrived
yet is neither a hit nor a false alarm, and recent days have few labels, so their figures rest on
fewer transactions (the ``labelled`` column says how many). Definitions:

* alert: a decision of ``review`` or ``block``;
* alert precision: labelled frauds among labelled alerts;
* card precision@k: among the ``k`` cards with the highest score of the day (labelled transactions
  only), the share with a fraud that day, divided by ``k`` even when fewer cards were scored
  (:func:`detector.evaluation.card_precision_at_k`); over several days, the mean of the days;
* its ceiling: the same with the frauds themselves as scores, the best any model could do with
  that day's frauds (fewer than ``k`` compromised cards cannot fill ``k`` places);
* average precision: area under the precision-recall curve of the scores, labelled transactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from detector.audit.collection import AuditCollection
from detector.evaluation import average_precision, card_precision_at_k, roc_auc

DAY_S = 86400.0
ALERTS = frozenset({"review", "block"})
FRAUD, LEGITIMATE, UNLABELLED = 1, 0, -1
# The lag from event time to the audit write is a latency only when transactions are stamped as they
# happen; a replay or a simulation stamps them hours or years away from the wall clock.
REALTIME_MAX_MEDIAN_LAG_S = 3600.0


@dataclass(frozen=True)
class Joined:
    """Decisions as numpy columns with their labels (``FRAUD``, ``LEGITIMATE`` or ``UNLABELLED``)."""

    times: np.ndarray
    days: np.ndarray  # whole days since the epoch, UTC
    cards: np.ndarray
    scores: np.ndarray
    alerts: np.ndarray
    blocks: np.ndarray
    labels: np.ndarray
    partitions: np.ndarray
    generations: np.ndarray
    processing_ms: np.ndarray
    write_lags_s: np.ndarray
    amounts: np.ndarray
    review_thresholds: np.ndarray

    @property
    def labelled(self) -> np.ndarray:
        return self.labels != UNLABELLED


def join(collection: AuditCollection, labels: Mapping[str, bool]) -> Joined:
    outcomes = np.array(collection.outcomes, dtype=object)
    times = np.array(collection.times, dtype=float)
    return Joined(
        times=times,
        days=np.floor(times / DAY_S).astype(np.int64),
        cards=np.array(collection.cards, dtype=object),
        scores=np.array(collection.scores, dtype=float),
        alerts=np.isin(outcomes, list(ALERTS)),
        blocks=outcomes == "block",
        labels=np.array(
            [UNLABELLED if t not in labels else int(labels[t]) for t in collection.transaction_ids],
            dtype=np.int8,
        ),
        partitions=np.array(collection.partitions, dtype=np.int64),
        generations=np.array(collection.generations, dtype=np.int64),
        processing_ms=np.array(collection.processing_ms, dtype=float),
        write_lags_s=np.array(collection.write_lags_s, dtype=float),
        amounts=np.array(collection.amounts, dtype=float),
        review_thresholds=np.array(collection.review_thresholds, dtype=float),
    )


@dataclass(frozen=True)
class PeriodMetrics:
    """Volumes and precision for one day (``day``) or for the whole report (``day`` None)."""

    day: date | None
    transactions: int
    reviews: int
    blocks: int
    labelled: int
    frauds: int
    labelled_alerts: int
    fraud_alerts: int
    alert_precision: float
    card_precision: float
    card_precision_ceiling: float
    average_precision: float

    @property
    def alerts(self) -> int:
        return self.reviews + self.blocks


def period_metrics(joined: Joined, rows: np.ndarray | slice, k: int, day: date | None) -> PeriodMetrics:
    """The metrics over ``rows`` of ``joined``: a day's rows, or all of them."""
    alerts, blocks, labels = joined.alerts[rows], joined.blocks[rows], joined.labels[rows]
    labelled = labels != UNLABELLED
    fraud = labels == FRAUD
    labelled_alerts = int((alerts & labelled).sum())
    fraud_alerts = int((alerts & fraud).sum())
    days, cards, scores = joined.days[rows][labelled], joined.cards[rows][labelled], joined.scores[rows]
    frauds = list(fraud[labelled].astype(float))
    return PeriodMetrics(
        day=day,
        transactions=len(labels),
        reviews=int((alerts & ~blocks).sum()),
        blocks=int(blocks.sum()),
        labelled=int(labelled.sum()),
        frauds=int(fraud.sum()),
        labelled_alerts=labelled_alerts,
        fraud_alerts=fraud_alerts,
        alert_precision=fraud_alerts / labelled_alerts if labelled_alerts else float("nan"),
        card_precision=card_precision_at_k(list(days), list(cards), list(scores[labelled]), frauds, k),
        card_precision_ceiling=card_precision_at_k(list(days), list(cards), frauds, frauds, k),
        average_precision=average_precision(fraud[labelled], scores[labelled]),
    )


def daily_metrics(joined: Joined, k: int) -> list[PeriodMetrics]:
    """One :class:`PeriodMetrics` per event-time day that has decisions, in day order."""
    if not len(joined.days):
        return []
    order = np.argsort(joined.days, kind="stable")
    days = joined.days[order]
    starts = np.flatnonzero(np.diff(days, prepend=days[0] - 1))
    ends = [*starts[1:], len(days)]
    return [
        period_metrics(joined, order[start:end], k, day_date(int(days[start])))
        for start, end in zip(starts, ends, strict=True)
    ]


def overall_auc(joined: Joined) -> float:
    labelled = joined.labelled
    return roc_auc(joined.labels[labelled] == FRAUD, joined.scores[labelled])


@dataclass(frozen=True)
class ScoreHistogram:
    """Counts of labelled transactions per score bin; both classes share ``edges``."""

    edges: np.ndarray
    fraud: np.ndarray
    legitimate: np.ndarray


def score_histogram(joined: Joined, bins: int = 20) -> ScoreHistogram:
    edges = np.arange(bins + 1) / bins  # exact edges: a score of 0.95 falls in [0.95, 1.0]
    scores = np.clip(joined.scores, 0.0, 1.0)
    return ScoreHistogram(
        edges=edges,
        fraud=np.histogram(scores[joined.labels == FRAUD], edges)[0],
        legitimate=np.histogram(scores[joined.labels == LEGITIMATE], edges)[0],
    )


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p90: float
    p99: float
    max: float


def percentiles(values: np.ndarray) -> Percentiles | None:
    """Distribution summary of the finite ``values``; None if there are none."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    p50, p90, p99 = np.percentile(finite, [50, 90, 99])
    return Percentiles(len(finite), float(p50), float(p90), float(p99), float(finite.max()))


@dataclass(frozen=True)
class WriteLag:
    """Event time to audit write, in seconds; ``realtime`` False means it is not a latency at all."""

    lags_s: np.ndarray
    summary: Percentiles
    realtime: bool


def write_lag(joined: Joined) -> WriteLag | None:
    lags = joined.write_lags_s[np.isfinite(joined.write_lags_s)]
    summary = percentiles(lags)
    if summary is None:
        return None
    return WriteLag(lags, summary, 0.0 <= summary.p50 <= REALTIME_MAX_MEDIAN_LAG_S)


def generation_steps(joined: Joined) -> dict[int, list[tuple[float, int]]]:
    """Per partition, (event time, model generation) where the generation changes, plus the last time."""
    steps: dict[int, list[tuple[float, int]]] = {}
    for partition in np.unique(joined.partitions):
        rows = joined.partitions == partition
        order = np.argsort(joined.times[rows], kind="stable")
        times, generations = joined.times[rows][order], joined.generations[rows][order]
        changes = np.flatnonzero(np.diff(generations, prepend=generations[0] - 1))
        points = [(float(times[i]), int(generations[i])) for i in changes]
        points.append((float(times[-1]), int(generations[-1])))
        steps[int(partition)] = points
    return steps


def day_date(day: int) -> date:
    return datetime.fromtimestamp(day * DAY_S, tz=UTC).date()
