"""The tree preset learns rare frauds: on a stream a tree must split to rank, it beats a constant."""

from __future__ import annotations

import random
from collections.abc import Iterator

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


def test_the_tree_preset_ranks_frauds_that_only_splits_find() -> None:
    assert prequential_auc(FraudModel(ModelConfig(kind="hoeffding_adaptive_tree"))) > 0.75


def test_rivers_default_tree_stays_a_stump_on_the_same_stream() -> None:
    """What the preset fixes: with River's max_share_to_split=0.99, a leaf under 1% fraud never splits."""
    default = FraudModel(ModelConfig(pipeline=[["tree.HoeffdingAdaptiveTreeClassifier", {}]]))
    assert prequential_auc(default) < 0.6
    assert default.classifier.summary["n_leaves"] == 1
