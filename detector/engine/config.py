"""Engine configuration: one frozen tree of validated dataclasses, buildable from a plain nested dict.

The classes are pydantic dataclasses: types, ranges and durations are checked when a config is
built, never at the first transaction, and the engine then reads plain attributes (no validation on
the hot path). They pickle as plain dataclasses, so snapshots keep their format.

>>> config = EngineConfig.from_dict({"model": {"kind": "hoeffding_adaptive_tree"},
...                                  "policy": {"review_threshold": 0.4}, "label_horizon": "30d"})
>>> config.model.kind, config.policy.review_threshold, config.drift.miss_detector, config.label_horizon
('hoeffding_adaptive_tree', 0.4, 'hddm_a', 2592000.0)
>>> EngineConfig.from_dict({"model": {"knd": "x"}, "max_pending": "lots"})
Traceback (most recent call last):
...
ValueError: invalid engine config:
  model.knd: unknown setting
  max_pending: expected an integer, got 'lots'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as validated_dataclass

from detector.engine.drift import DriftConfig
from detector.engine.features import DAY, FeatureConfig
from detector.engine.model import ModelConfig
from detector.engine.policy import DecisionPolicy
from detector.engine.shared import SharingConfig
from detector.validation import CONFIG_RULES, Count, Duration, NonNegativeCount, PositiveDuration, report


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class EngineConfig:
    """Everything that shapes the engine's behaviour; part of every snapshot."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)
    sharing: SharingConfig = field(default_factory=SharingConfig)  # docs/shared-learning.md
    label_horizon: PositiveDuration = 60 * DAY  # how long a scored transaction waits for its label
    max_pending: Count = 5_000_000
    max_queued_labels: Count = 1_000_000
    top_reasons: NonNegativeCount = 3
    # Event-time tolerance: a transaction more than ``max_future_skew`` ahead of the watermark does not
    # move it unless ``future_confirmations`` in a row do; one ``max_lateness`` behind it is flagged.
    max_future_skew: Duration = DAY  # a partition silent for a day is rare; a clock off by months is not
    future_confirmations: Count = 3
    max_lateness: Duration = 3600.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EngineConfig:
        """Build from nested dicts (e.g. parsed JSON); every problem (an unknown key, a wrong type, a
        value out of range) is reported at once, one line each."""
        try:
            return _ADAPTER.validate_python(values)
        except ValidationError as error:
            raise ValueError(report("invalid engine config", error)) from None


_ADAPTER = TypeAdapter(EngineConfig)
