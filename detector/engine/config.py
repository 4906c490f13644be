"""Engine configuration: one frozen tree of dataclasses, buildable from a plain nested dict.

>>> config = EngineConfig.from_dict({"model": {"kind": "hoeffding_adaptive_tree"},
...                                  "policy": {"review_threshold": 0.4}})
>>> config.model.kind, config.policy.review_threshold, config.drift.miss_detector
('hoeffding_adaptive_tree', 0.4, 'hddm_a')
>>> EngineConfig.from_dict({"model": {"knd": "x"}})
Traceback (most recent call last):
...
ValueError: unknown setting model.knd
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detector.engine.drift import DriftConfig
from detector.engine.features import DAY, FeatureConfig
from detector.engine.model import ModelConfig
from detector.engine.policy import DecisionPolicy, Rule


@dataclass(frozen=True)
class EngineConfig:
    """Everything that shapes the engine's behaviour; part of every snapshot."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)
    label_horizon: float = 60 * DAY  # how long a scored transaction waits for its label
    max_pending: int = 5_000_000
    max_queued_labels: int = 1_000_000
    top_reasons: int = 3
    # Event-time tolerance: a transaction more than ``max_future_skew`` ahead of the watermark does not
    # move it unless ``future_confirmations`` in a row do; one ``max_lateness`` behind it is flagged.
    max_future_skew: float = DAY  # a partition silent for a day is rare; a clock off by months is not
    future_confirmations: int = 3
    max_lateness: float = 3600.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EngineConfig:
        """Build from nested dicts (e.g. parsed JSON); unknown keys are errors, not silently ignored."""
        sections = {"features": FeatureConfig, "model": ModelConfig, "drift": DriftConfig}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key == "policy":
                policy = dict(value)
                policy["rules"] = tuple(Rule.from_dict(rule) for rule in policy.get("rules", ()))
                kwargs[key] = _build(DecisionPolicy, policy, key)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise ValueError(f"unknown setting {key}")
        return cls(**kwargs)


def _build(kind: type, values: Mapping[str, Any], prefix: str) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    for key in values:
        if key not in known:
            raise ValueError(f"unknown setting {prefix}.{key}")
    # JSON has no tuples: convert lists so the frozen configs stay hashable.
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
