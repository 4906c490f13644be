"""The fraud model: any River classifier pipeline from config, with class imbalance handled and explanations.

A model is a spec of River estimators (:mod:`detector.engine.estimators`), either given in full as
``pipeline`` or named by ``kind``, a preset:

* ``logistic_regression``: ``StandardScaler | LogisticRegression``, fraud weighted in the log loss,
  intercept started at the prior fraud rate so a cold model does not flag everything.
* ``hoeffding_tree``: a Hoeffding tree whose leaves split on the weak gains rare frauds give
  (``max_share_to_split=1.0``, ``delta=0.01``, ``grace_period=50``) and score by class frequencies.
* ``hoeffding_adaptive_tree``: the same tree with subtrees replaced on drift, its detector made deaf to
  bursts of frauds, which it otherwise took for drift; no bootstrap sampling, which blurs rare frauds.
* ``adaptive_random_forest``: River's ARF with the same tree and detector settings, about 7x the LR's cost.

The presets' settings come from measurement (bench/model_bench.py, docs/models.md): the SGD rate
0.001 (AUC 0.82 against 0.75 at 0.005); under-sampling the legitimate class, or weighting frauds,
made the trees worse.

Explanations (the features that pushed a score up, for reason codes):

* a linear model after name-preserving scalers: exact, each feature's ``weight * scaled value``, the
  term it adds to the logit;
* anything else: occlusion, the drop in fraud probability when a feature is set to its running
  mean; only the most unusual features (largest z-score) are tried, to bound the cost.

>>> model = FraudModel(ModelConfig(kind="logistic_regression"))
>>> round(model.predict_proba_one({"amount": 10.0}), 3)  # cold: the prior fraud rate
0.005
>>> for _ in range(300):
...     model.learn_one({"amount": 900.0}, True)
...     model.learn_one({"amount": 10.0}, False)
>>> model.predict_proba_one({"amount": 900.0}) > model.predict_proba_one({"amount": 10.0})
True
>>> model.contributions({"amount": 900.0}, top_k=1)[0][0]
'amount'
>>> ModelConfig(pipeline=[["forest.AMFClassifier", {"n_estimators": 5}]]).kind
'pipeline'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic.dataclasses import dataclass as validated_dataclass
from river import base, compose, preprocessing

from detector.engine import MODEL_KINDS, ModelKind
from detector.engine.estimators import build_pipeline
from detector.validation import CONFIG_RULES, Count

PIPELINE = "pipeline"  # the kind of a model given as a spec rather than by a preset's name
DEFAULT_KIND = "logistic_regression"
Spec = tuple[Any, ...]  # steps, checked by the builder for its clearer messages


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class ModelConfig:
    """A preset (``kind``) or a River pipeline spec (``pipeline``), checked by building it once.

    ``seed`` goes to every estimator that takes one; the other settings shape the presets only.
    """

    kind: Literal[ModelKind, "pipeline"] | None = None
    pipeline: Spec | None = None
    seed: int = 7
    prior_fraud_rate: Annotated[float, Field(gt=0, lt=1)] = 0.005
    fraud_weight: Annotated[float, Field(gt=0)] = (
        10.0  # logistic regression: weight of a fraud in the log loss
    )
    learning_rate: Annotated[float, Field(gt=0)] = 0.001
    grace_period: Count = 50
    forest_size: Count = 10

    @field_validator("pipeline")
    @classmethod
    def _buildable(cls, pipeline: Spec | None) -> Spec | None:
        if pipeline is not None:
            build_pipeline(pipeline, seed=0)  # raises SpecError, a ValueError, naming the step
        return pipeline

    def __post_init__(self) -> None:
        if self.pipeline is None:
            if self.kind == PIPELINE:
                raise ValueError("kind 'pipeline' needs a pipeline spec")
            kind = self.kind or DEFAULT_KIND
        elif self.kind not in (None, PIPELINE):
            raise ValueError(f"give either kind (a preset) or pipeline, not both (kind {self.kind!r})")
        else:
            kind = PIPELINE
        object.__setattr__(self, "kind", kind)  # frozen: settled once, here

    @property
    def settled_kind(self) -> str:
        """``kind`` as :meth:`__post_init__` settled it: a preset's name, or ``"pipeline"``."""
        assert self.kind is not None, "settled in __post_init__"
        return self.kind

    def spec(self) -> Spec:
        """The River estimators this config stands for."""
        return self.pipeline if self.pipeline is not None else PRESETS[self.settled_kind](self)


# Why each setting: docs/models.md ("Why the adaptive tree was far behind"). Splits: a leaf under 1% fraud
# must be allowed to split, and the info gains of fraud splits are tiny next to River's default bound.
_TREE_SPLITS = {"max_share_to_split": 1.0, "delta": 0.01, "leaf_prediction": "mc"}
# A subtree's (or a forest member's) error is mostly its misses, so a clump of a few frauds reads as
# drift at River's defaults (0.002 in a tree, 0.001 in a forest); drift of the whole stream is the
# engine's job (detector.engine.drift).
_SUBTREE_DRIFT_DELTA = 1e-9


def _logistic_regression(config: ModelConfig) -> Spec:
    prior = config.prior_fraud_rate
    regression = {
        "optimizer": ["optim.SGD", {"lr": config.learning_rate}],
        "loss": ["optim.losses.Log", {"weight_pos": config.fraud_weight}],
        "intercept_init": math.log(prior / (1 - prior)),
    }
    return (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", regression))


def _hoeffding_tree(config: ModelConfig) -> Spec:
    return (("tree.HoeffdingTreeClassifier", {**_TREE_SPLITS, "grace_period": config.grace_period}),)


def _hoeffding_adaptive_tree(config: ModelConfig) -> Spec:
    tree = {
        **_TREE_SPLITS,
        "grace_period": config.grace_period,
        "bootstrap_sampling": False,
        "drift_detector": ["drift.ADWIN", {"delta": _SUBTREE_DRIFT_DELTA}],
    }
    return (("tree.HoeffdingAdaptiveTreeClassifier", tree),)


def _adaptive_random_forest(config: ModelConfig) -> Spec:
    forest = {
        **_TREE_SPLITS,
        "n_models": config.forest_size,
        "grace_period": config.grace_period,
        "drift_detector": ["drift.ADWIN", {"delta": _SUBTREE_DRIFT_DELTA}],
        "warning_detector": ["drift.ADWIN", {"delta": 10 * _SUBTREE_DRIFT_DELTA}],
    }
    return (("forest.ARFClassifier", forest),)


PRESETS: dict[str, Callable[[ModelConfig], Spec]] = {
    "logistic_regression": _logistic_regression,
    "hoeffding_tree": _hoeffding_tree,
    "hoeffding_adaptive_tree": _hoeffding_adaptive_tree,
    "adaptive_random_forest": _adaptive_random_forest,
}
assert tuple(PRESETS) == MODEL_KINDS, "detector.engine.MODEL_KINDS names the presets"

# Scalers that keep each feature's name, so a linear model's weights still name the raw features.
_NAME_PRESERVING = (
    preprocessing.StandardScaler,
    preprocessing.AdaptiveStandardScaler,
    preprocessing.MinMaxScaler,
    preprocessing.MaxAbsScaler,
    preprocessing.RobustScaler,
)


def build_classifier(config: ModelConfig) -> base.Classifier | compose.Pipeline:
    """A fresh, untrained River classifier for ``config``."""
    return build_pipeline(config.spec(), seed=config.seed)


def _linear_parts(classifier: base.Classifier | compose.Pipeline) -> tuple[list[Any], Any] | None:
    """(scalers, linear model) if the classifier's weights explain it exactly, else None."""
    steps = list(classifier.steps.values()) if isinstance(classifier, compose.Pipeline) else [classifier]
    *scalers, last = steps
    if hasattr(last, "weights") and all(isinstance(step, _NAME_PRESERVING) for step in scalers):
        return scalers, last
    return None


class FraudModel:
    """A River classifier behind a fraud-probability interface, with running feature statistics."""

    def __init__(self, config: ModelConfig) -> None:
        self.classifier = build_classifier(config)
        self.labels_learned = 0
        # Occlusion needs each feature's mean; a linear model explains itself without it.
        self._baseline = None if _linear_parts(self.classifier) else _RunningStats()

    def predict_proba_one(self, x: dict[str, float]) -> float:
        """Probability that ``x`` is fraud (River returns ``False``/``True`` keys, or ``{}`` when cold)."""
        # River takes x as dict[Hashable, Any], which no dict[str, float] is (dict is invariant).
        return float(self.classifier.predict_proba_one(x).get(True, 0.0))  # type: ignore[arg-type]

    def learn_one(self, x: dict[str, float], is_fraud: bool) -> None:
        self.classifier.learn_one(x, is_fraud)  # type: ignore[arg-type]  # River's dict[Hashable, Any]
        self.labels_learned += 1
        if self._baseline is not None:
            self._baseline.update(x)

    def contributions(self, x: dict[str, float], top_k: int = 3) -> list[tuple[str, float]]:
        """The ``top_k`` features that raised this score most, with their (positive) contribution."""
        parts = _linear_parts(self.classifier) if self._baseline is None else None
        if parts is not None:
            scalers, linear = parts
            scaled = x
            for scaler in scalers:
                scaled = scaler.transform_one(scaled)
            weights = linear.weights
            terms = {name: weights.get(name, 0.0) * value for name, value in scaled.items()}
        else:
            terms = self._occlusion(x, candidates=max(2 * top_k, 6))
        ranked = sorted(((v, k) for k, v in terms.items() if v > 0), reverse=True)[:top_k]
        return [(name, value) for value, name in ranked]

    def _occlusion(self, x: dict[str, float], candidates: int) -> dict[str, float]:
        baseline = self._baseline
        assert baseline is not None, "occlusion is only used by models without explaining weights"
        score = self.predict_proba_one(x)
        terms = {}
        for name in baseline.most_unusual(x, candidates):
            neutral = dict(x)
            neutral[name] = baseline.mean(name)
            terms[name] = score - self.predict_proba_one(neutral)
        return terms


class _RunningStats:
    """Per-feature running mean and variance, for occlusion baselines."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: dict[str, float] = {}
        self.squares: dict[str, float] = {}

    def update(self, x: dict[str, float]) -> None:
        self.count += 1
        sums, squares = self.sums, self.squares
        for name, value in x.items():
            sums[name] = sums.get(name, 0.0) + value
            squares[name] = squares.get(name, 0.0) + value * value

    def mean(self, name: str) -> float:
        return self.sums.get(name, 0.0) / self.count if self.count else 0.0

    def most_unusual(self, x: dict[str, float], how_many: int) -> list[str]:
        """Feature names ranked by how far ``x`` is from the mean, in standard deviations."""
        if not self.count:
            return list(x)[:how_many]
        distances = []
        for name, value in x.items():
            mean = self.mean(name)
            variance = max(self.squares.get(name, 0.0) / self.count - mean * mean, 0.0)
            distances.append((abs(value - mean) / (math.sqrt(variance) + 1e-9), name))
        distances.sort(reverse=True)
        return [name for _, name in distances[:how_many]]
