"""The one learner of a topology: the model, the terminal table and drift, from every partition.

Scorers send :class:`Scored` and :class:`Labelled` updates tagged with their epoch, and close marks
(:class:`EpochClosed`). Once every partition has closed epoch ``e`` (or idles), the learner applies
the updates of ``e`` in canonical order (:func:`canonical_key`: event time, then kind, then ids),
which does not depend on how many partitions there are or how their updates interleave:

- ``Scored``: its vector waits for its label (until ``label_horizon``), the terminal counts it,
  and its score feeds the score-drift monitor;
- ``Labelled``: joined to its vector, the :class:`DriftAwareModel` (lifecycle.py) learns it, and
  the terminal's label-derived risk counts it.

Each :meth:`SharedLearner.apply_ready` that applies epochs returns a :class:`SharedVersion` that a
:class:`~detector.engine.view.SharedView` replays. Why epochs, and what staleness they give:
docs/shared-learning.md.
"""

from __future__ import annotations

import pickle
from collections import Counter, defaultdict
from collections.abc import Iterable

from detector.engine.config import EngineConfig
from detector.engine.expiring import IN_MEMORY, StateStores
from detector.engine.features import FeatureExtractor
from detector.engine.labels import PendingScore, PendingScores
from detector.engine.lifecycle import MODEL_CHANGES, DriftAwareModel
from detector.engine.model import FraudModel
from detector.engine.outputs import EngineEvent
from detector.engine.shared import (
    NO_VERSION,
    EpochClosed,
    Labelled,
    Scored,
    SharedUpdate,
    SharedVersion,
    canonical_key,
)
from detector.engine.terminals import ACTIVITY, LABEL, TerminalChange, TerminalTable
from detector.engine.view import SharedView


class SharedLearner:
    """Applies complete epochs of every partition's updates; also a read view of its own state."""

    def __init__(
        self,
        config: EngineConfig,
        partitions: int = 1,
        stores: StateStores = IN_MEMORY,
        terminal_stores: StateStores = IN_MEMORY,
    ) -> None:
        """``stores`` keeps the pending scores; ``terminal_stores`` the terminal table (in memory
        for the learner process, whose views copy it; on disk for a partition's own engine)."""
        self.config = config
        self.lifecycle = DriftAwareModel(config.model, config.drift)
        self.terminals = TerminalTable(config.features, terminal_stores)
        self.pending = PendingScores(config.label_horizon, config.max_pending, stores)
        self.names = FeatureExtractor(config.features).names
        self.version = NO_VERSION  # every epoch <= this one is applied
        self.closed = dict.fromkeys(range(partitions), NO_VERSION)  # partition -> highest closed epoch
        self.idle: set[int] = set()
        self.stats: Counter[str] = Counter()
        self._waiting: defaultdict[int, list[Scored | Labelled]] = defaultdict(list)

    # -- the read view of the learner's own state ------------------------------------------------

    @property
    def model(self) -> FraudModel:
        return self.lifecycle.model

    @property
    def generation(self) -> int:
        return self.lifecycle.generation

    @property
    def drift_state(self) -> str:
        return self.lifecycle.drift_state

    def export_view(self) -> SharedView:
        """A copy of the shared state at :attr:`version`, from which a scorer process starts its view."""
        view = SharedView(self.config.features, self.config.model)
        view.terminals, view.model = pickle.loads(
            pickle.dumps((self.terminals, self.model), pickle.HIGHEST_PROTOCOL)
        )
        view.generation, view.drift_state, view.version = self.generation, self.drift_state, self.version
        return view

    # -- inputs -------------------------------------------------------------------------------

    def submit(self, updates: Iterable[SharedUpdate]) -> None:
        """Take updates of one partition, in the order it made them."""
        for update in updates:
            if type(update) is EpochClosed:
                self._close(update)
                continue
            epoch = update.epoch
            if epoch <= self.version:  # from a partition that was idle: the first epoch still open
                self.stats["updates_after_idle"] += 1
                epoch = self.version + 1
            self._waiting[epoch].append(update)

    def ready_epoch(self) -> int:
        """The latest epoch every partition not idle has closed."""
        active = [epoch for partition, epoch in self.closed.items() if partition not in self.idle]
        return min(active) if active else max(self.closed.values())

    def apply_ready(self) -> SharedVersion | None:
        """Apply every epoch all partitions have closed; the version they make, or None if none."""
        ready = self.ready_epoch()
        if ready <= self.version:
            return None
        labels_before, generation_before = self.model.labels_learned, self.lifecycle.generation
        model_before = self.model
        changes: list[TerminalChange] = []
        events: list[EngineEvent] = []
        for epoch in sorted(epoch for epoch in self._waiting if epoch <= ready):
            epoch_changes = self._apply_epoch(epoch, self._waiting.pop(epoch))
            self.terminals.apply(epoch_changes)
            changes.extend(epoch_changes)
            events.extend(self._collect_events())
        self.version = ready
        # Every partition is past epoch ``ready``: a label still to come is later than its end.
        self._expire((ready + 1) * self.config.sharing.epoch)
        changed = (
            self.model is not model_before
            or self.model.labels_learned != labels_before
            or self.lifecycle.generation != generation_before
        )
        return SharedVersion(
            epoch=ready,
            terminal_changes=tuple(changes),
            model=self.model if changed else None,
            generation=self.generation,
            drift_state=self.drift_state,
            events=tuple(events),
        )

    # -- internals ----------------------------------------------------------------------------

    def _close(self, mark: EpochClosed) -> None:
        partition = mark.partition
        if partition not in self.closed:
            raise ValueError(f"close mark from partition {partition}, not one of {len(self.closed)}")
        if mark.idle:
            self.idle.add(partition)
            self.stats["idle_marks"] += 1
            return
        self.idle.discard(partition)
        self.closed[partition] = max(self.closed[partition], mark.epoch)

    def _apply_epoch(self, epoch: int, updates: list[Scored | Labelled]) -> list[TerminalChange]:
        """Apply one epoch's updates in canonical order; the terminal changes they make, in order."""
        updates.sort(key=canonical_key)
        self._expire(updates[0].event_time)
        changes: list[TerminalChange] = []
        lifecycle = self.lifecycle
        for update in updates:
            if type(update) is Scored:
                self.pending.add(
                    update.transaction_id,
                    PendingScore(
                        update.event_time,
                        update.customer_id,
                        update.terminal_id,
                        update.flagged,
                        update.generation,
                        update.features,
                    ),
                )
                changes.append(
                    TerminalChange(epoch, update.terminal_id, update.event_time, ACTIVITY, update.amount)
                )
                lifecycle.watch_score(update.score, update.event_time)
                continue
            pending = self.pending.take(update.transaction_id, now=update.event_time)
            if pending is None:
                self.stats["labels_unjoined"] += 1
                continue
            is_fraud = update.is_fraud
            lifecycle.learn_one(
                dict(zip(self.names, pending.features, strict=True)),
                is_fraud,
                flagged=pending.flagged,
                scored_generation=pending.generation,
                event_time=update.event_time,
            )
            changes.append(
                TerminalChange(epoch, pending.terminal_id, update.event_time, LABEL, 1.0 if is_fraud else 0.0)
            )
            self.stats["labels_joined"] += 1
        return changes

    def _expire(self, now: float) -> None:
        expired = self.pending.expire(now)
        if expired:
            self.stats["pending_expired"] += expired

    def _collect_events(self) -> list[EngineEvent]:
        events = list(self.lifecycle.pop_events())
        for event in events:
            if event.kind in MODEL_CHANGES:
                self.stats["model_changes"] += 1
            self.stats[f"events_{event.kind}"] += 1
        return events
