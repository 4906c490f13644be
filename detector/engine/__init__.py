"""The detection engine: plain Python, no Kafka, deterministic for a given order of inputs."""

from typing import Literal, get_args

# Here rather than in model.py so that settings can name the kinds without importing River.
ModelKind = Literal[
    "logistic_regression", "hoeffding_tree", "hoeffding_adaptive_tree", "adaptive_random_forest"
]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
