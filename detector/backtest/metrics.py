"""The comparison: ranking quality, alert workload and money, per configuration and period.

Ground truth is each transaction's final label; unlabelled transactions are left out of the ranking
metrics and the recall, and count as legitimate for card precision@k (as an investigator would find
them). "Alerts" are the decisions a person looks at (review or block, rules included), "blocks" the
ones that stopped a payment. ``best_card_prec@k`` is the ceiling: what a perfect ranking would get
with that day's frauds, since with fewer than ``k`` compromised cards a day even it cannot fill
every slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detector.engine.policy import BLOCK, OUTCOMES, REVIEW
from detector.evaluation import average_precision, card_precision_at_k, roc_auc

DAY = 86400.0
WEEK = 7 * DAY
OUTCOME_CODES = {outcome: code for code, outcome in enumerate(OUTCOMES)}
REJECTED = -1  # the engine refused the transaction (a repeated id): no score, no decision
_REVIEW, _BLOCK = OUTCOME_CODES[REVIEW], OUTCOME_CODES[BLOCK]


@dataclass(frozen=True)
class Period:
    """Transactions stamped in ``[start, end)``."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Results:
    """One configuration's scores and decision codes, indexed as the ground truth."""

    scores: np.ndarray
    outcomes: np.ndarray


def periods(times: np.ndarray, start: float | None, end: float | None, weekly: bool) -> list[Period]:
    """The whole chosen span, then (``weekly``) each week of it, from the first day's midnight."""
    if not len(times):
        return []
    low = float(times.min()) if start is None else start
    high = float(times.max()) + 1 if end is None else end
    chosen = [Period("all", low, high)]
    if weekly:
        week_start = low // DAY * DAY
        number = 1
        while week_start < high:
            chosen.append(Period(f"week {number}", max(low, week_start), min(high, week_start + WEEK)))
            week_start += WEEK
            number += 1
    return chosen


def in_period(times: np.ndarray, period: Period) -> np.ndarray:
    return (times >= period.start) & (times < period.end)


def quality(truth: Mapping[str, np.ndarray], results: Results, mask: np.ndarray, k: int) -> dict[str, float]:
    """The comparison row of one configuration over the transactions in ``mask``."""
    scored = mask & (results.outcomes != REJECTED)
    labels, scores, outcomes = truth["labels"][scored], results.scores[scored], results.outcomes[scored]
    amounts = truth["amounts"][scored]
    days = (truth["times"][scored] // DAY).astype(np.int64)
    labelled = labels != -1
    fraud = labels == 1
    alerts, blocks = outcomes >= _REVIEW, outcomes == _BLOCK
    n_frauds = int(fraud.sum())
    n_days = max(len(np.unique(days)), 1)
    day_list, card_list, fraud_list = days.tolist(), truth["cards"][scored].tolist(), fraud.tolist()
    return {
        "transactions": int(scored.sum()),
        "frauds": n_frauds,
        "auc": roc_auc(fraud[labelled], scores[labelled]),
        "avg_precision": average_precision(fraud[labelled], scores[labelled]),
        f"card_prec@{k}": _card_precision(day_list, card_list, scores.tolist(), fraud_list, k),
        f"best_card_prec@{k}": _card_precision(day_list, card_list, fraud_list, fraud_list, k),
        "recall_review": _share(alerts & fraud, n_frauds),
        "alerts/day": float(alerts.sum()) / n_days,
        "recall_block": _share(blocks & fraud, n_frauds),
        "blocks/day": float(blocks.sum()) / n_days,
        "fraud_caught": float(amounts[alerts & fraud].sum()),
        "fraud_missed": float(amounts[~alerts & fraud].sum()),
    }


def rule_quality(
    truth: Mapping[str, np.ndarray],
    results: Results,
    fired: np.ndarray,
    review_threshold: float,
    mask: np.ndarray,
) -> dict[str, float]:
    """How a replayed rule did: how often it fired, how precise it was on labelled transactions,
    and the frauds it caught that the score alone (below the review threshold) missed."""
    hits = fired & mask & (results.outcomes != REJECTED)
    labels = truth["labels"]
    labelled_hits = hits & (labels != -1)
    fraud_hits = hits & (labels == 1)
    only_by_rule = fraud_hits & (results.scores < review_threshold)
    return {
        "fired": int(hits.sum()),
        "precision": _share(fraud_hits, int(labelled_hits.sum())),
        "frauds_caught": int(fraud_hits.sum()),
        "frauds_missed_by_score": int(only_by_rule.sum()),
        "amount_missed_by_score": float(truth["amounts"][only_by_rule].sum()),
    }


def _card_precision(days: list, cards: list, scores: list, frauds: list, k: int) -> float:
    return card_precision_at_k(days, cards, scores, frauds, k) if days else float("nan")


def _share(hits: np.ndarray, total: int) -> float:
    return float(hits.sum()) / total if total else float("nan")
