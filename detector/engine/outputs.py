"""What the engine hands back: one decision per transaction, and events about drift and the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detector.engine.records import Transaction

# Event kinds, stable strings written to the audit topic.
DRIFT_WARNING = "drift_warning"
DRIFT_DETECTED = "drift_detected"
BACKGROUND_STARTED = "background_started"
BACKGROUND_DISCARDED = "background_discarded"
MODEL_SWAPPED = "model_swapped"
MODEL_RESET = "model_reset"
SCORE_DRIFT = "score_drift"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one transaction and everything needed to explain it later."""

    transaction: Transaction
    score: float
    outcome: str
    reason_codes: tuple[str, ...]
    top_features: tuple[tuple[str, float], ...]
    features: dict[str, float]
    model_kind: str
    model_generation: int
    drift_state: str
    review_threshold: float
    block_threshold: float
    model_version: int  # the shared version (epoch) scored with: docs/shared-learning.md


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """A drift signal or a model change, stamped with the event time at which it happened."""

    kind: str
    event_time: float
    model_generation: int
    detail: dict[str, Any] = field(default_factory=dict)
