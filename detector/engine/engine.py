"""The detection engine: score transactions, learn from delayed labels, detect drift, recover.

The engine joins labels to what was scored, in event time, and decides; the model it scores and
teaches, with its drift detection and recovery, is a :class:`DriftAwareModel` (lifecycle.py).

Plain Python with no I/O: the same inputs in the same order give the same decisions, events and
state, which is what makes backtests, benchmarks and crash recovery by replay possible.

Time is event time only. The engine's *watermark* is the latest transaction time it has seen. A
label stamped ``T`` waits in a queue until a transaction later than ``T`` arrives, so every
transaction up to ``T`` has been scored before the model learns from it, at any replay speed. A
label that arrives after the watermark has passed it is applied at once and counted as late.

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
>>> _ = engine.process_transaction(Transaction("t2", 1_700_000_200.0, "card", "term", 30.0))
>>> engine.model.labels_learned  # released once event time passed the label's timestamp
1
"""

from __future__ import annotations

import pickle
from array import array
from collections import Counter
from dataclasses import replace
from typing import Any

from detector.engine.config import EngineConfig
from detector.engine.features import FeatureExtractor
from detector.engine.labels import LabelQueue, PendingScore, PendingScores
from detector.engine.lifecycle import MODEL_CHANGES, DriftAwareModel
from detector.engine.model import FraudModel
from detector.engine.outputs import Decision, EngineEvent
from detector.engine.policy import APPROVE
from detector.engine.records import InvalidInput, Label, Transaction

_SNAPSHOT_MAGIC = b"fraud-engine/3\n"  # bumped whenever the pickled state classes change
FUTURE_SKEW, TOO_LATE = "skew:future_event_time", "late:event_time"


class DetectionEngine:
    """Features, the drift-aware model, decision policy and label join for one ordered stream."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.extractor = FeatureExtractor(config.features)
        self.lifecycle = DriftAwareModel(config.model, config.drift)
        self.pending = PendingScores(config.label_horizon, config.max_pending)
        self.label_queue = LabelQueue()
        self.watermark = float("-inf")
        self._future_streak = 0  # consecutive transactions too far ahead of the watermark
        self.stats: Counter[str] = Counter()
        self._events: list[EngineEvent] = []

    @property
    def model(self) -> FraudModel:
        """The champion: the model that scores now and learns each label."""
        return self.lifecycle.model

    @property
    def generation(self) -> int:
        return self.lifecycle.generation

    @property
    def drift_state(self) -> str:
        return self.lifecycle.drift_state

    @property
    def queued_labels(self) -> int:
        """Labels waiting for event time to pass their timestamp."""
        return len(self.label_queue)

    # -- inputs -------------------------------------------------------------------------------

    def process_transaction(self, tx: Transaction) -> Decision:
        """Score and decide; raises :class:`InvalidInput` for a transaction id seen before."""
        if self.pending.peek(tx.transaction_id) is not None or self.pending.was_labelled(tx.transaction_id):
            self.stats["transactions_duplicate"] += 1
            raise InvalidInput(
                "duplicate_transaction", f"transaction_id {tx.transaction_id!r} was already scored"
            )
        flags = self._check_event_time(tx.event_time)
        # A time too far ahead is not trusted: the transaction counts as happening at the watermark.
        # Stamped later, its state would push the card's and terminal's real activity out of their
        # windows and refuse its labels as earlier than it; stamped in 2099, it would sit at the old
        # end of an expiring store forever and stop everything behind it from expiring.
        state_tx = tx if not flags or flags[0] != FUTURE_SKEW else replace(tx, event_time=self.watermark)

        features = self.extractor.transform_one(state_tx)
        lifecycle = self.lifecycle
        score = lifecycle.predict_proba_one(features)
        policy = self.config.policy
        facts = {**tx.to_dict(), **features} if policy.rules else features
        outcome, reasons = policy.decide(facts, score)
        reasons.extend(flags)
        top_features: tuple[tuple[str, float], ...] = ()
        if score >= policy.review_threshold:
            top_features = tuple(lifecycle.contributions(features, self.config.top_reasons))
            reasons.extend(f"feature:{name}" for name, _ in top_features)

        self.extractor.learn_one(state_tx)
        self.pending.add(
            tx.transaction_id,
            PendingScore(
                event_time=state_tx.event_time,
                customer_id=tx.customer_id,
                terminal_id=tx.terminal_id,
                flagged=score >= policy.review_threshold,
                generation=lifecycle.generation,
                features=array("d", list(features.values())),  # sized exactly, not grown
            ),
        )
        lifecycle.watch_score(score, state_tx.event_time)
        self._collect_events()
        self.stats["transactions_scored"] += 1
        self.stats[f"decisions_{outcome}"] += 1
        if outcome != APPROVE and score < policy.review_threshold:
            self.stats["decisions_by_rule_only"] += 1
        return Decision(
            transaction=tx,
            score=score,
            outcome=outcome,
            reason_codes=tuple(reasons),
            top_features=top_features,
            features=features,
            model_kind=self.config.model.kind,
            model_generation=lifecycle.generation,
            drift_state=lifecycle.drift_state,
            review_threshold=policy.review_threshold,
            block_threshold=policy.block_threshold,
        )

    def process_label(self, label: Label) -> None:
        """Queue a label until event time passes it, or apply it now if it is already late."""
        pending = self.pending.peek(label.transaction_id)
        if pending is not None:
            _check_label_matches(label, pending)
        if label.event_time < self.watermark:
            self.stats["labels_late"] += 1
            self._apply_label(label)
            return
        if len(self.label_queue) >= self.config.max_queued_labels:
            raise InvalidInput(
                "label_queue_full", f"{len(self.label_queue)} labels already wait for their time"
            )
        self.label_queue.push(label)
        self.stats["labels_queued"] += 1

    def flush(self) -> None:
        """Apply every queued label now, as at the end of a backtest."""
        for label in self.label_queue.pop_before(float("inf")):
            self._apply_label(label)

    def pop_events(self) -> list[EngineEvent]:
        """Drift and model events since the last call, in the order they happened."""
        events, self._events = self._events, []
        return events

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state (model, features, pending labels, detectors) as bytes, for checkpoints.

        Pickle is used because River models are pickled objects; a snapshot is trusted data and
        must only be restored from the detector's own checkpoint store.
        """
        return _SNAPSHOT_MAGIC + pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, snapshot: bytes) -> DetectionEngine:
        if not snapshot.startswith(_SNAPSHOT_MAGIC):
            raise ValueError("not an engine snapshot (or one of an incompatible version)")
        try:
            engine = pickle.loads(snapshot[len(_SNAPSHOT_MAGIC) :])
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError) as error:
            raise ValueError(f"unreadable engine snapshot: {error}") from None
        if not isinstance(engine, cls):
            raise ValueError("snapshot does not hold a DetectionEngine")
        return engine

    def reconfigure(self, config: EngineConfig) -> None:
        """Adopt ``config``, e.g. after a restore: decision settings (policy, reasons, label queue,
        event-time tolerances) apply at once; a change to what the state was built with (features,
        model, drift, label horizon, pending bound) raises ValueError, as that state cannot follow.

        >>> engine = DetectionEngine()
        >>> engine.reconfigure(EngineConfig(top_reasons=5))
        >>> engine.config.top_reasons
        5
        >>> engine.reconfigure(EngineConfig(label_horizon=86400.0))
        Traceback (most recent call last):
        ...
        ValueError: the state was built with another label_horizon
        """
        changed = [name for name in _STATE_SHAPING if getattr(config, name) != getattr(self.config, name)]
        if changed:
            raise ValueError(f"the state was built with another {', '.join(changed)}")
        self.config = config

    def gauges(self) -> dict[str, Any]:
        """Sizes of the bounded state, for metrics and memory checks."""
        return {
            "cards": len(self.extractor.cards),
            "terminals": len(self.extractor.terminals),
            "pending_scores": len(self.pending),
            "queued_labels": self.queued_labels,
            "model_generation": self.generation,
            "labels_learned": self.model.labels_learned,
        }

    # -- internals ----------------------------------------------------------------------------

    def _check_event_time(self, event_time: float) -> list[str]:
        """Advance the watermark within the skew tolerance; reason codes for an odd timestamp."""
        config, watermark = self.config, self.watermark
        if event_time > watermark + config.max_future_skew and watermark > float("-inf"):
            self._future_streak += 1
            if self._future_streak < config.future_confirmations:
                self.stats["transactions_future_skew"] += 1
                return [FUTURE_SKEW]
        self._future_streak = 0
        if event_time < watermark - config.max_lateness:
            self.stats["transactions_too_late"] += 1
            return [TOO_LATE]
        if event_time < watermark:
            self.stats["transactions_out_of_order"] += 1
        self._advance(event_time)
        return []

    def _advance(self, event_time: float) -> None:
        """Move the watermark forward, releasing the labels it passes and expiring old state."""
        if event_time <= self.watermark:
            return
        self.watermark = event_time
        for label in self.label_queue.pop_before(event_time):
            self._apply_label(label)
        expired = self.pending.expire(event_time)
        if expired:
            self.stats["pending_expired"] += expired

    def _apply_label(self, label: Label) -> None:
        pending = self.pending.peek(label.transaction_id)
        if pending is None:
            seen = self.pending.was_labelled(label.transaction_id)
            self.stats["labels_duplicate" if seen else "labels_unknown"] += 1
            return
        try:
            _check_label_matches(label, pending)
        except InvalidInput:
            self.stats["labels_invalid"] += 1
            return
        self.pending.take(label.transaction_id, now=label.event_time)
        x = dict(zip(self.extractor.names, pending.features, strict=True))
        self.lifecycle.learn_one(
            x,
            label.is_fraud,
            flagged=pending.flagged,
            scored_generation=pending.generation,
            event_time=label.event_time,
        )
        self.extractor.learn_label(pending.customer_id, pending.terminal_id, label.is_fraud, label.event_time)
        self.stats["labels_learned"] += 1
        self._collect_events()

    def _collect_events(self) -> None:
        """Take over the model's events, counted as they happen."""
        for event in self.lifecycle.pop_events():
            if event.kind in MODEL_CHANGES:
                self.stats["model_changes"] += 1
            self.stats[f"events_{event.kind}"] += 1
            self._events.append(event)


# What the engine's components are built from, and so cannot change under learned state.
_STATE_SHAPING = ("features", "model", "drift", "label_horizon", "max_pending")


def _check_label_matches(label: Label, pending: PendingScore) -> None:
    if label.customer_id != pending.customer_id:
        raise InvalidInput("label_mismatch", f"label for {label.transaction_id!r} names another customer_id")
    if label.event_time < pending.event_time:
        raise InvalidInput("label_before_transaction", f"label for {label.transaction_id!r} predates it")
