"""The backtest loop: every event, read once, goes to each configuration's engines.

Each configuration runs as the service does with ``partitions`` input partitions: a
:class:`ScaledTopology` (a scorer per partition sharing one learner, docs/shared-learning.md), or
with ``shared=False`` one independent engine per partition (how the service ran before shared
learning, for comparison). Events go in the order read; outputs go to the configuration's files as
they come (a partition waiting at the epoch barrier decides a little later), so memory holds the
engines (bounded as in the service), the ground truth (:mod:`detector.backtest.truth`) and one
score and decision code per transaction. The time each configuration spends (engine and output) is
measured separately, for its events/s.
"""

from __future__ import annotations

import sys
import time
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from tqdm import tqdm

from detector.audit.records import Provenance
from detector.backtest.metrics import OUTCOME_CODES, REJECTED, Results
from detector.backtest.output import LABELS, VariantOutput
from detector.backtest.routing import partition_for
from detector.backtest.truth import GroundTruth
from detector.backtest.variants import Variant
from detector.engine.engine import DetectionEngine
from detector.engine.outputs import Decision
from detector.engine.records import InvalidInput, Label, Transaction
from detector.engine.topology import Outcome, ScaledTopology

TRANSACTIONS_TOPIC, LABELS_TOPIC = "transactions", "labels"  # the service's default input names
INSTANCE_ID = "backtest"
_PROGRESS_EVERY = 1000


@dataclass
class VariantRun:
    """One configuration's engines, outputs and results as the run goes."""

    variant: Variant
    engines: list[DetectionEngine]  # one per partition, or none when ``topology`` decides
    output: VariantOutput
    topology: ScaledTopology | None = None
    rules: tuple[str, ...] = ()  # names of the replayed rules, whose firings are recorded
    scores: array = field(default_factory=lambda: array("d"))
    outcomes: array = field(default_factory=lambda: array("b"))
    fired: dict[str, array] = field(default_factory=dict)  # rule name -> transaction indices
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self._last = Provenance(TRANSACTIONS_TOPIC, 0, 0, INSTANCE_ID)  # where the latest input came from
        self.fired = {name: array("q") for name in self.rules}
        self._model_kind = self.variant.config.model.settled_kind
        self._rule_codes = [(f"rule:{name}", self.fired[name]) for name in self.rules]

    def transaction(self, index: int, transaction: Transaction, provenance: Provenance) -> None:
        if self.topology is not None:
            self.scores.append(float("nan"))  # until the topology decides it
            self.outcomes.append(REJECTED)
            self._settle(
                self.topology.feed(transaction, (index, provenance), provenance.partition), provenance
            )
            return
        engine = self.engines[provenance.partition]
        started = time.perf_counter()
        try:
            decision = engine.process_transaction(transaction)
        except InvalidInput as error:
            self._write_events(engine, provenance)
            self.output.rejected(error, transaction.transaction_id, transaction.customer_id, provenance)
            self.rejected[error.reason] += 1
            self.scores.append(float("nan"))
            self.outcomes.append(REJECTED)
            return
        elapsed_ms = 1000.0 * (time.perf_counter() - started)
        self._write_events(engine, provenance)
        self.scores.append(float("nan"))
        self.outcomes.append(REJECTED)
        self._decided(index, decision, provenance, elapsed_ms)

    def label(self, label: Label, provenance: Provenance) -> None:
        if self.topology is not None:
            self._settle(self.topology.feed(label, (None, provenance), provenance.partition), provenance)
            return
        engine = self.engines[provenance.partition]
        try:
            engine.process_label(label)
        except InvalidInput as error:
            self.output.rejected(error, None, label.customer_id, provenance)
            self.rejected[error.reason] += 1
        self._write_events(engine, provenance)

    def results(self) -> Results:
        return Results(
            np.frombuffer(self.scores, dtype=np.float64), np.frombuffer(self.outcomes, dtype=np.int8)
        )

    def finish(self) -> None:
        """The end of the input: what the topology still holds is decided (an engine holds nothing)."""
        if self.topology is not None:
            self._settle(self.topology.finish(), None)

    def _decided(self, index: int, decision: Decision, provenance: Provenance, elapsed_ms: float) -> None:
        self.output.decision(decision, provenance, elapsed_ms)
        self.scores[index] = decision.score
        self.outcomes[index] = OUTCOME_CODES[decision.outcome]
        for code, indices in self._rule_codes:
            if code in decision.reason_codes:
                indices.append(index)

    def _settle(self, outcomes: list[Outcome], provenance: Provenance | None) -> None:
        """Write what the topology decided or refused, and its events, with the input that released
        them (the last input, at the end)."""
        assert self.topology is not None
        for outcome in outcomes:
            # the token this run fed with the input: (transaction index or None for a label, provenance)
            index, origin = cast(tuple[int | None, Provenance], outcome.token)
            if outcome.error is not None:
                tx_id = None if index is None else outcome.event.transaction_id
                self.output.rejected(outcome.error, tx_id, outcome.event.customer_id, origin)
                self.rejected[outcome.error.reason] += 1
            elif outcome.decision is not None:
                assert index is not None, "a decision is a transaction's, fed with its index"
                self._decided(index, outcome.decision, origin, 0.0)  # its time is the feed's, not its own
        self._last = provenance or self._last
        for event in self.topology.pop_events():
            self.output.event(event, self._model_kind, self._last)

    def _write_events(self, engine: DetectionEngine, provenance: Provenance) -> None:
        for event in engine.pop_events():
            self.output.event(event, self._model_kind, provenance)


@dataclass
class Backtest:
    """What a finished run hands to the comparison."""

    truth: GroundTruth
    runs: list[VariantRun]
    events: int
    wall_seconds: float


def run_backtest(
    events: Iterable[Transaction | Label],
    variants: list[Variant],
    partitions: int,
    out: Path,
    *,
    rules: tuple[str, ...] = (),
    progress: bool = False,
    shared: bool = True,
) -> Backtest:
    """Feed ``events`` to every configuration, writing each one's outputs under ``out/<name>``;
    ``shared=False``: independent engines per partition instead of the shared-learning topology."""
    runs = [
        VariantRun(
            variant,
            [] if shared else [DetectionEngine(variant.config) for _ in range(partitions)],
            VariantOutput(out / variant.name, partitions),
            ScaledTopology(variant.config, partitions) if shared else None,
            rules,
        )
        for variant in variants
    ]
    truth = GroundTruth()
    offsets = {TRANSACTIONS_TOPIC: [0] * partitions, LABELS_TOPIC: [0] * partitions}
    bar = tqdm(unit=" events", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    labels = (out / LABELS).open("wb", buffering=1 << 20)  # for the reports, whatever the input format
    count = 0
    began = time.perf_counter()
    try:
        for event in events:
            partition = partition_for(event.customer_id, partitions) if partitions > 1 else 0
            topic = LABELS_TOPIC if type(event) is Label else TRANSACTIONS_TOPIC
            offset = offsets[topic][partition]
            offsets[topic][partition] = offset + 1
            provenance = Provenance(topic, partition, offset, INSTANCE_ID)
            if topic is LABELS_TOPIC:
                truth.label(event)  # type: ignore[arg-type]
                labels.write(event.to_json() + b"\n")
                _feed(runs, event, None, provenance)
            else:
                _feed(runs, event, truth.add(event), provenance)  # type: ignore[arg-type]
            count += 1
            if count % _PROGRESS_EVERY == 0:
                bar.update(_PROGRESS_EVERY)
        bar.update(count % _PROGRESS_EVERY)
        for run in runs:
            clock = time.perf_counter()
            run.finish()
            run.seconds += time.perf_counter() - clock
    finally:
        bar.close()
        labels.close()
        for run in runs:
            run.output.close()
    return Backtest(truth, runs, count, time.perf_counter() - began)


def _feed(
    runs: list[VariantRun], event: Transaction | Label, index: int | None, provenance: Provenance
) -> None:
    """One event to every configuration (``index`` None for a label), each one's time measured."""
    clock = time.perf_counter()
    for run in runs:
        if index is None:
            run.label(event, provenance)  # type: ignore[arg-type]
        else:
            run.transaction(index, event, provenance)  # type: ignore[arg-type]
        now = time.perf_counter()
        run.seconds += now - clock
        clock = now
