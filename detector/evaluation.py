"""Exact ranking metrics for rare-class scores: ROC AUC, average precision, card precision@k.

River's streaming ``ROCAUC`` approximates with a few thresholds and is badly off at fraud rates
(0.50 against an exact 0.75 at a 0.28% positive rate), so backtests, drift tests and reports use
these exact computations over collected scores instead.

>>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
0.8333
>>> card_precision_at_k(days=[0, 0, 0], cards=["a", "b", "c"], scores=[0.9, 0.8, 0.1],
...                     frauds=[1, 0, 0], k=2)
0.5
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_scores = s[order]
    # Average ranks over ties: each run of equal scores gets the mean of its positions (1-based).
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(s)]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    rank_sum = ranks[y].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def average_precision(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the precision-recall curve as a step function over distinct thresholds."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    true_positives = np.cumsum(y_sorted)
    # Evaluate only at the last position of each run of tied scores: one threshold per distinct score.
    last_of_run = np.concatenate((np.flatnonzero(np.diff(s_sorted)), [len(s_sorted) - 1]))
    tp = true_positives[last_of_run]
    precision = tp / (last_of_run + 1)
    recall_gain = np.diff(np.concatenate(([0], tp))) / positives
    return float(np.sum(precision * recall_gain))


def card_precision_at_k(
    days: Sequence[Hashable],
    cards: Sequence[Hashable],
    scores: Sequence[float],
    frauds: Sequence[int],
    k: int = 100,
) -> float:
    """Mean over days of: among the ``k`` cards with the highest score that day, the share compromised.

    A card's daily score is its highest transaction score that day; it counts as compromised that
    day if any of its transactions that day was fraud. This is what an investigation team that can
    check ``k`` cards a day would see.
    """
    best: dict[Hashable, dict[Hashable, float]] = defaultdict(dict)
    compromised: dict[Hashable, set[Hashable]] = defaultdict(set)
    for day, card, score, fraud in zip(days, cards, scores, frauds, strict=True):
        daily = best[day]
        if score > daily.get(card, float("-inf")):
            daily[card] = score
        if fraud:
            compromised[day].add(card)
    if not best:
        return float("nan")
    precisions = []
    for day, daily in best.items():
        top = sorted(daily.items(), key=lambda item: (-item[1], str(item[0])))[:k]
        precisions.append(sum(card in compromised[day] for card, _ in top) / k)
    return float(np.mean(precisions))
