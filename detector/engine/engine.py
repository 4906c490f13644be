"""The detection engine: score transactions, learn from delayed labels, detect drift, recover.

The engine is one :class:`~detector.engine.scorer.Scorer` (card state, the label queue, the
decision) and a local :class:`~detector.engine.learner.SharedLearner` (the model, a
:class:`DriftAwareModel` from lifecycle.py, and the terminal table), wired in process: the learner's
own state is the scorer's view, and each epoch the scorer closes is applied at once. So it decides
exactly as a scaled-out topology of one partition does (docs/shared-learning.md): a transaction
sees every label and terminal update of the epochs (``sharing.epoch`` seconds) before its own.

Plain Python with no I/O: the same inputs in the same order give the same decisions, events and
state, which is what makes backtests, benchmarks and crash recovery by replay possible.

Time is event time only. The engine's *watermark* is the latest transaction time it has seen. A
label stamped ``T`` waits in a queue until a transaction later than ``T`` arrives, so every
transaction up to ``T`` has been scored before the model learns from it, at any replay speed. A
label that arrives after the watermark has passed it is applied at once and counted as late.
The model learns a label once its epoch closes, i.e. with a staleness under ``2 * sharing.epoch``.

Skewed clocks: a transaction stamped more than ``max_future_skew`` ahead of the watermark is scored
and flagged ``skew:future_event_time`` but does not move the watermark, so one bad clock cannot
release every queued label or expire all state; its features and state take the watermark as its
time. Only when ``future_confirmations`` transactions in a row are that far ahead is the jump
taken as real (a partition silent for a long time).
A transaction more than ``max_lateness`` behind the watermark is scored against the current state
(which may already hold labels from after its time) and flagged ``late:event_time``.
Both are counted; neither is refused, because a payment always needs a decision.

>>> from detector.engine.records import Label, Transaction
>>> engine = DetectionEngine()
>>> decision = engine.process_transaction(Transaction("t1", 1_700_000_000.0, "card", "term", 25.0))
>>> decision.outcome, decision.model_generation
('approve', 1)
>>> engine.process_label(Label("t1", "card", False, 1_700_000_100.0))
>>> engine.stats["labels_queued"], engine.model.labels_learned
(1, 0)
>>> _ = engine.process_transaction(Transaction("t2", 1_700_000_130.0, "card", "term", 30.0))
>>> engine.model.labels_learned  # released once event time passed the label's timestamp...
0
>>> _ = engine.process_transaction(Transaction("t3", 1_700_000_200.0, "card", "term", 30.0))
>>> engine.model.labels_learned  # ... and learned once its epoch closed
1
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from detector.engine.config import EngineConfig
from detector.engine.expiring import IN_MEMORY, StateStores
from detector.engine.features import FeatureExtractor
from detector.engine.labels import PendingScores
from detector.engine.learner import SharedLearner
from detector.engine.model import FraudModel
from detector.engine.outputs import Decision, EngineEvent
from detector.engine.records import Label, Transaction
from detector.engine.scorer import FUTURE_SKEW, TOO_LATE, Scorer
from detector.engine.snapshots import pickled, unpickled

__all__ = ["FUTURE_SKEW", "TOO_LATE", "DetectionEngine"]

_SNAPSHOT_MAGIC = b"fraud-engine/4\n"  # bumped whenever the pickled state classes change


class DetectionEngine:
    """Features, the drift-aware model, decision policy and label join for one ordered stream."""

    def __init__(self, config: EngineConfig | None = None, stores: StateStores = IN_MEMORY) -> None:
        """``stores`` keeps the per-entity state: in memory by default, on disk in the service."""
        self.config = config = config or EngineConfig()
        self.scorer = Scorer(config, stores=stores)
        self.learner = SharedLearner(config, partitions=1, stores=stores, terminal_stores=stores)
        self._events: list[EngineEvent] = []

    @property
    def model(self) -> FraudModel:
        """The champion: the model that scores now and learns each label."""
        return self.learner.model

    @property
    def extractor(self) -> FeatureExtractor:
        return self.scorer.extractor

    @property
    def pending(self) -> PendingScores:
        """Scored vectors waiting for their label."""
        return self.learner.pending

    @property
    def generation(self) -> int:
        return self.learner.generation

    @property
    def drift_state(self) -> str:
        return self.learner.drift_state

    @property
    def queued_labels(self) -> int:
        """Labels waiting for event time to pass their timestamp."""
        return len(self.scorer.label_queue)

    @property
    def watermark(self) -> float:
        return self.scorer.watermark

    @property
    def stats(self) -> Counter[str]:
        """The scorer's counts and the learner's, together."""
        return self.scorer.stats + self.learner.stats

    # -- inputs -------------------------------------------------------------------------------

    def process_transaction(self, tx: Transaction) -> Decision:
        """Score and decide; raises :class:`InvalidInput` for a transaction id seen before."""
        self.scorer.close_through(self.scorer.required_version(tx))
        self._exchange()
        try:
            return self.scorer.process_transaction(tx, self.learner)
        finally:
            self.learner.submit(self.scorer.pop_updates())

    def process_label(self, label: Label) -> None:
        """Queue a label until event time passes it, or release it now if it is already late."""
        self.scorer.process_label(label)
        self.learner.submit(self.scorer.pop_updates())

    def flush(self) -> None:
        """Apply every queued label now, as at the end of a backtest."""
        self.scorer.flush()
        self._exchange()

    def pop_events(self) -> list[EngineEvent]:
        """Drift and model events since the last call, in the order they happened."""
        events, self._events = self._events, []
        return events

    # -- state --------------------------------------------------------------------------------

    def snapshot(self, stores: StateStores = IN_MEMORY) -> bytes:
        """The whole state (model, features, pending labels, detectors) as bytes, for checkpoints;
        what ``stores`` keeps on disk is referred to, not copied.

        Pickle is used because River models are pickled objects; a snapshot is trusted data and
        must only be restored from the detector's own checkpoint store.
        """
        return pickled(self, _SNAPSHOT_MAGIC, stores)

    @classmethod
    def restore(cls, snapshot: bytes, stores: StateStores = IN_MEMORY) -> DetectionEngine:
        """The engine of :meth:`snapshot`, its state on disk found in ``stores``; ValueError if
        ``snapshot`` cannot be one."""
        return unpickled(snapshot, _SNAPSHOT_MAGIC, cls, stores)

    def reconfigure(self, config: EngineConfig) -> None:
        """Adopt ``config``, e.g. after a restore: decision settings (policy, reasons, label queue,
        event-time tolerances) apply at once; a change to what the state was built with (features,
        model, drift, label horizon, pending bound, sharing) raises ValueError, as that state cannot
        follow.

        >>> engine = DetectionEngine()
        >>> engine.reconfigure(EngineConfig(top_reasons=5))
        >>> engine.config.top_reasons
        5
        >>> engine.reconfigure(EngineConfig(label_horizon=86400.0))
        Traceback (most recent call last):
        ...
        ValueError: the state was built with another label_horizon
        """
        check_state_shaping(self.config, config)
        self.config = self.scorer.config = self.learner.config = config

    def gauges(self) -> dict[str, Any]:
        """Sizes of the bounded state, for metrics and memory checks."""
        return {
            "cards": len(self.scorer.extractor.cards),
            "terminals": len(self.learner.terminals),
            "pending_scores": len(self.learner.pending),
            "queued_labels": self.queued_labels,
            "model_generation": self.generation,
            "labels_learned": self.model.labels_learned,
        }

    # -- internals ----------------------------------------------------------------------------

    def _exchange(self) -> None:
        """Hand the scorer's updates to the learner and apply every epoch it has closed."""
        self.learner.submit(self.scorer.pop_updates())
        version = self.learner.apply_ready()
        if version is not None:
            self._events.extend(version.events)


# What the engine's components are built from, and so cannot change under learned state.
_STATE_SHAPING = ("features", "model", "drift", "label_horizon", "max_pending", "sharing")


def check_state_shaping(built: EngineConfig, config: EngineConfig) -> None:
    """ValueError if ``config`` differs from ``built`` in what learned state was built with."""
    changed = [name for name in _STATE_SHAPING if getattr(config, name) != getattr(built, name)]
    if changed:
        raise ValueError(f"the state was built with another {', '.join(changed)}")
