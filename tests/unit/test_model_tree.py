"""The tree presets learn rare frauds: on a stream a tree must split to rank, they beat a constant, and
a clump of frauds is not drift to the adaptive tree's subtree detector (docs/models.md)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator

import pytest
from river import base, drift, tree

from detector.engine import ModelKind
from detector.engine.model import FraudModel, ModelConfig
from detector.evaluation import roc_auc


def region_stream(n: int, seed: int) -> Iterator[tuple[dict[str, float], bool]]:
    """Frauds (about 1%) live where a heavy-tailed amount AND a count are both high: neither feature
    alone, nor a linear cut, finds them; a tree with two splits does."""
    rng = random.Random(seed)
    for _ in range(n):
        amount = rng.lognormvariate(3.5, 1.0)
        count = float(rng.randrange(0, 40))
        risky = amount > 150 and count > 30
        yield (
            {"amount": amount, "count": count, "noise": rng.gauss(0, 1)},
            rng.random() < (0.3 if risky else 0.002),
        )


def prequential_auc(model: FraudModel, n: int = 12_000) -> float:
    """ROC AUC of the second half's scores, each given before its label was learned."""
    truth, scores = [], []
    for index, (x, is_fraud) in enumerate(region_stream(n, seed=1)):
        if index >= n // 2:
            truth.append(is_fraud)
            scores.append(model.predict_proba_one(x))
        model.learn_one(x, is_fraud)
    return roc_auc(truth, scores)


@pytest.mark.parametrize("kind", ["hoeffding_tree", "hoeffding_adaptive_tree"])
def test_the_tree_presets_rank_frauds_that_only_splits_find(kind: ModelKind) -> None:
    assert prequential_auc(FraudModel(ModelConfig(kind=kind))) > 0.75


def test_rivers_default_tree_stays_a_stump_on_the_same_stream() -> None:
    """What the preset fixes: with River's max_share_to_split=0.99, a leaf under 1% fraud never splits."""
    default = FraudModel(ModelConfig(pipeline=(["tree.HoeffdingAdaptiveTreeClassifier", {}],)))
    assert prequential_auc(default) < 0.6
    assert isinstance(default.classifier, tree.HoeffdingAdaptiveTreeClassifier)
    assert default.classifier.summary["n_leaves"] == 1


def leaf_misses(seed: int, n: int = 60_000) -> Iterator[bool]:
    """A majority-class leaf's misses on a stationary stream: 0.4% fraud, plus now and then a card
    tested a few times in a row (20 payments, 30% of them fraud), as the simulator's card testing does."""
    rng = random.Random(seed)
    clump_left = 0
    for _ in range(n):
        if clump_left == 0 and rng.random() < 1 / 3_000:
            clump_left = 20
        yield rng.random() < (0.3 if clump_left else 0.004)
        clump_left = max(0, clump_left - 1)


def detections(detector: base.DriftDetector, misses: Iterator[bool]) -> int:
    count = 0
    for miss in misses:
        detector.update(miss)
        count += detector.drift_detected
    return count


def test_a_clump_of_frauds_is_no_drift_to_the_adaptive_trees_subtree_detector() -> None:
    """River's default ADWIN took such clumps for drift and replaced subtrees: on the 90-day simulated
    stream the former preset grew 48 alternate trees, switched 3 times and ended as a single leaf."""
    adaptive = FraudModel(ModelConfig(kind="hoeffding_adaptive_tree")).classifier
    assert isinstance(adaptive, tree.HoeffdingAdaptiveTreeClassifier)
    seeds = range(4)
    assert all(detections(copy.deepcopy(adaptive.drift_detector), leaf_misses(seed)) == 0 for seed in seeds)
    assert all(detections(drift.ADWIN(), leaf_misses(seed)) > 0 for seed in seeds)
