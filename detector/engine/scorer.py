"""One input partition's scorer: card state, the label queue and join check, and the decision.

The scorer is today's engine minus what every partition shares (docs/shared-learning.md): it reads
terminal features and the model from a read-only view (:class:`~detector.engine.view.ReadView`) and,
instead of learning, emits shared updates (:mod:`detector.engine.shared`) for the learner. Card
state (windows, terminals, known frauds) and labels stay here and apply at once, as before.

Event time works as it always did: the watermark is the latest transaction time, a label waits
until the watermark passes it, late and future-skewed transactions are flagged. On top, the
scorer closes epochs: before the first transaction of epoch ``e + 1`` moves the watermark, it
releases the labels before that epoch and emits :class:`EpochClosed` for ``e``, so the learner can
apply ``e``; that transaction is then scored with version ``e`` exactly. A caller drives this with
:meth:`Scorer.required_version` and :meth:`Scorer.close_through` before
:meth:`Scorer.process_transaction`, waiting in between for the view to reach the version.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections import Counter
from dataclasses import replace

from detector.engine.config import EngineConfig
from detector.engine.expiring import IN_MEMORY, StateStores
from detector.engine.features import FeatureExtractor
from detector.engine.labels import LabelQueue, NothingCodec
from detector.engine.outputs import Decision
from detector.engine.policy import APPROVE
from detector.engine.records import InvalidInput, Label, Transaction
from detector.engine.shared import NO_VERSION, EpochClosed, Labelled, Scored, SharedUpdate, epoch_of
from detector.engine.view import ReadView

FUTURE_SKEW, TOO_LATE = "skew:future_event_time", "late:event_time"


_TIME = struct.Struct("<d")


class ScoredCodec:
    """(event time, customer) of a scored transaction as bytes, for state on disk."""

    def encode(self, scored: tuple[float, str]) -> bytes:
        return _TIME.pack(scored[0]) + scored[1].encode()

    def decode(self, data: bytes) -> tuple[float, str]:
        return _TIME.unpack_from(data)[0], data[_TIME.size :].decode()


class ScoredIndex:
    """Transaction id -> (event time, customer) of what was scored, and recently labelled ids: enough
    to refuse a bad label or a repeated transaction at once, without the feature vectors."""

    def __init__(self, horizon: float, max_entries: int, stores: StateStores = IN_MEMORY) -> None:
        self._waiting = stores.expiring("scored", horizon, max_entries, ScoredCodec())
        self._labelled = stores.expiring("scored_labelled", horizon, max_entries, NothingCodec())

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, transaction_id: str, event_time: float, customer_id: str) -> None:
        # Interned: all the entries of one card share one string (about 50 bytes each saved).
        self._waiting.put(transaction_id, (event_time, sys.intern(customer_id)), event_time)

    def peek(self, transaction_id: str) -> tuple[float, str] | None:
        return self._waiting.get(transaction_id)

    def seen(self, transaction_id: str) -> bool:
        return transaction_id in self._waiting or transaction_id in self._labelled

    def was_labelled(self, transaction_id: str) -> bool:
        return transaction_id in self._labelled

    def take(self, transaction_id: str, now: float) -> None:
        if self._waiting.pop(transaction_id) is not None:
            self._labelled.put(transaction_id, None, now)

    def expire(self, now: float) -> None:
        self._labelled.evict(now)
        self._waiting.evict(now)


class Scorer:
    """Scores one partition's transactions against a shared view and emits what the learner needs."""

    def __init__(self, config: EngineConfig, partition: int = 0, stores: StateStores = IN_MEMORY) -> None:
        self.config = config
        self.partition = partition
        self.extractor = FeatureExtractor(config.features, stores)
        self.index = ScoredIndex(config.label_horizon, config.max_pending, stores)
        self.label_queue = LabelQueue()
        self.watermark = float("-inf")
        self.closed = NO_VERSION  # every epoch <= this one is closed
        self._highest = NO_VERSION  # the latest epoch an update went to
        self._future_streak = 0  # consecutive transactions too far ahead of the watermark
        self.stats: Counter[str] = Counter()
        self._updates: list[SharedUpdate] = []

    # -- the epoch barrier ----------------------------------------------------------------------

    def required_version(self, tx: Transaction) -> int:
        """The shared version ``tx`` will be scored with (nothing changes: ask as often as needed)."""
        if self.index.seen(tx.transaction_id):
            return self.closed  # refused as a duplicate: it needs nothing
        return epoch_of(self._watermark_after(tx.event_time), self.config.sharing.epoch) - 1

    def close_through(self, epoch: int) -> None:
        """Release the labels before the end of ``epoch`` and mark epochs <= ``epoch`` closed.

        Call it with :meth:`required_version` of the next transaction, before scoring it.
        """
        if epoch <= self.closed:
            return
        for label in self.label_queue.pop_before((epoch + 1) * self.config.sharing.epoch):
            self._apply_label(label)
        self.closed = epoch
        self._updates.append(EpochClosed(self.partition, epoch))

    def pop_updates(self) -> list[SharedUpdate]:
        """The updates and close marks since the last call, in the order they were made."""
        updates, self._updates = self._updates, []
        return updates

    # -- inputs -------------------------------------------------------------------------------

    def process_transaction(self, tx: Transaction, view: ReadView) -> Decision:
        """Score and decide with ``view``, which must be at :meth:`required_version`; raises
        :class:`InvalidInput` for a transaction id seen before."""
        if self.index.seen(tx.transaction_id):
            self.stats["transactions_duplicate"] += 1
            raise InvalidInput(
                "duplicate_transaction", f"transaction_id {tx.transaction_id!r} was already scored"
            )
        flags = self._check_event_time(tx.event_time)
        if view.version < self.closed:
            raise RuntimeError(f"view at version {view.version}, transaction needs {self.closed}")
        # A time too far ahead is not trusted: the transaction counts as happening at the watermark.
        # Stamped later, its state would push the card's real activity out of its windows and
        # refuse its labels as earlier than it; stamped in 2099, it would sit at the old end of an
        # expiring store forever and stop everything behind it from expiring.
        state_tx = tx if not flags or flags[0] != FUTURE_SKEW else replace(tx, event_time=self.watermark)

        features = self.extractor.transform_one(state_tx, view.terminals)
        model = view.model
        score = model.predict_proba_one(features)
        policy = self.config.policy
        facts = {**tx.to_dict(), **features} if policy.rules else features
        outcome, reasons = policy.decide(facts, score)
        reasons.extend(flags)
        top_features: tuple[tuple[str, float], ...] = ()
        flagged = score >= policy.review_threshold
        if flagged:
            top_features = tuple(model.contributions(features, self.config.top_reasons))
            reasons.extend(f"feature:{name}" for name, _ in top_features)

        self.extractor.learn_one(state_tx)
        self.index.add(tx.transaction_id, state_tx.event_time, tx.customer_id)
        self._updates.append(
            Scored(
                epoch=self._open_epoch(state_tx.event_time),
                transaction_id=tx.transaction_id,
                customer_id=tx.customer_id,
                terminal_id=tx.terminal_id,
                event_time=state_tx.event_time,
                amount=tx.amount,
                score=score,
                flagged=flagged,
                generation=view.generation,
                features=array("d", list(features.values())),  # sized exactly, not grown
            )
        )
        self.stats["transactions_scored"] += 1
        self.stats[f"decisions_{outcome}"] += 1
        if outcome != APPROVE and not flagged:
            self.stats["decisions_by_rule_only"] += 1
        return Decision(
            transaction=tx,
            score=score,
            outcome=outcome,
            reason_codes=tuple(reasons),
            top_features=top_features,
            features=features,
            model_kind=self.config.model.settled_kind,
            model_generation=view.generation,
            drift_state=view.drift_state,
            review_threshold=policy.review_threshold,
            block_threshold=policy.block_threshold,
            model_version=view.version,
        )

    def process_label(self, label: Label) -> None:
        """Queue a label until event time passes it, or release it now if it is already late;
        raises :class:`InvalidInput` at once for a label that cannot be right."""
        scored = self.index.peek(label.transaction_id)
        if scored is not None:
            _check_label_matches(label, scored)
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
        """Release every queued label now and close every epoch written to, as at the end of a stream."""
        for label in self.label_queue.pop_before(float("inf")):
            self._apply_label(label)
        self.close_through(self._highest)

    # -- internals ----------------------------------------------------------------------------

    def _watermark_after(self, event_time: float) -> float:
        """Where the watermark will be once a transaction at ``event_time`` is admitted."""
        config, watermark = self.config, self.watermark
        if (
            event_time > watermark + config.max_future_skew
            and watermark > float("-inf")
            and self._future_streak + 1 < config.future_confirmations
        ):
            return watermark
        return max(watermark, event_time)

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
        """Move the watermark forward: close the epochs it leaves, release the labels it passes."""
        if event_time <= self.watermark:
            return
        self.close_through(epoch_of(event_time, self.config.sharing.epoch) - 1)
        self.watermark = event_time
        for label in self.label_queue.pop_before(event_time):
            self._apply_label(label)
        self.index.expire(event_time)

    def _open_epoch(self, event_time: float) -> int:
        """The epoch an update made now belongs to: its own, or the first still open."""
        epoch = max(epoch_of(event_time, self.config.sharing.epoch), self.closed + 1)
        self._highest = max(self._highest, epoch)
        return epoch

    def _apply_label(self, label: Label) -> None:
        scored = self.index.peek(label.transaction_id)
        if scored is None:
            seen = self.index.was_labelled(label.transaction_id)
            self.stats["labels_duplicate" if seen else "labels_unknown"] += 1
            return
        try:
            _check_label_matches(label, scored)
        except InvalidInput:
            self.stats["labels_invalid"] += 1
            return
        self.index.take(label.transaction_id, now=label.event_time)
        self.extractor.learn_label(label.customer_id, label.is_fraud, label.event_time)
        self._updates.append(
            Labelled(
                epoch=self._open_epoch(label.event_time),
                transaction_id=label.transaction_id,
                customer_id=label.customer_id,
                is_fraud=label.is_fraud,
                event_time=label.event_time,
            )
        )
        self.stats["labels_learned"] += 1


def _check_label_matches(label: Label, scored: tuple[float, str]) -> None:
    event_time, customer_id = scored
    if label.customer_id != customer_id:
        raise InvalidInput("label_mismatch", f"label for {label.transaction_id!r} names another customer_id")
    if label.event_time < event_time:
        raise InvalidInput("label_before_transaction", f"label for {label.transaction_id!r} predates it")
