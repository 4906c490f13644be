"""The exact metrics agree with their definitions computed the slow way."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from detector.evaluation import average_precision, card_precision_at_k, roc_auc


def pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def thresholded_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall gain) * precision, from the definition."""
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        flagged = scores >= threshold
        tp = int((labels[flagged] == 1).sum())
        recall = tp / int(labels.sum())
        total += (recall - previous_recall) * tp / int(flagged.sum())
        previous_recall = recall
    return total


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_ap_match_definitions_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(300) < 0.1).astype(int)
    scores = np.round(rng.random(300) * 0.5 + labels * 0.3, 2)  # rounding makes ties
    assert roc_auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(thresholded_ap(labels, scores))


def test_degenerate_inputs_are_nan_not_errors() -> None:
    assert np.isnan(roc_auc([0, 0], [0.1, 0.2]))
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_card_precision_uses_each_cards_best_score_per_day() -> None:
    # Day 0: card a (fraud) scores 0.9 once; card b has two transactions, best 0.8; card c 0.1.
    # Day 1: only card c, not compromised.
    days = [0, 0, 0, 0, 1]
    cards = ["a", "b", "b", "c", "c"]
    scores = [0.9, 0.2, 0.8, 0.1, 0.7]
    frauds = [1, 0, 0, 0, 0]
    assert card_precision_at_k(days, cards, scores, frauds, k=2) == pytest.approx((1 / 2 + 0 / 2) / 2)
