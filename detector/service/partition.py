"""What the service does with one input partition's records, with no Kafka in sight.

A :class:`PartitionProcessor` owns the engine, the audit chain head and the replay bound of one
input partition (transactions partition ``p`` and labels partition ``p``, co-partitioned by
customer). For each input record it returns the records to produce: audit records (chained),
the compact decision, and dead letters. The Kafka loop only moves bytes in and out.

After a restart the engine is restored from a checkpoint that may be older than the committed
offsets; the records between the two are processed again to rebuild the state, but their outputs
were already committed, so they are dropped here (``replay_until``).

When the partitions share one model (:mod:`detector.service.sharing`), the engine is a scorer
reading the instance's shared view, and a transaction that needs a newer version than the view
holds is not processed: its partition closes the epochs before it, notes the version it waits for
(``waiting_for``) and re-reads the record once the view has it. What the scorer emits for the
learner is kept in ``updates`` until the transaction's commit; partition 0 also audits the engine
events of each version it is the first to use.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import orjson

from detector.audit.chain import ChainState
from detector.audit.records import (
    Provenance,
    WrittenSchema,
    decision_record,
    decision_reply,
    event_record,
    rejected_record,
)
from detector.engine.engine import DetectionEngine
from detector.engine.model import FraudModel
from detector.engine.outputs import Decision, EngineEvent
from detector.engine.policy import OUTCOMES
from detector.engine.records import InvalidInput, Transaction, decode_label, decode_transaction
from detector.engine.scorer import Scorer
from detector.engine.shared import NO_VERSION, SharedUpdate
from detector.engine.terminals import TerminalTable
from detector.engine.view import ReadView
from detector.service.shared_state import ViewHistory
from detector.service.topic_map import AUDIT, DEAD_LETTER, DECISIONS, TRANSACTIONS, TopicMap


class Kind(Enum):
    """What an input record came to."""

    DECISION = "decision"  # a transaction scored and decided
    REJECTED = "rejected"  # refused and dead-lettered
    LABEL = "label"  # a valid label
    REPLAYED = "replayed"  # already committed before a restart: state rebuilt, nothing emitted

    # Members are singletons: identity is equality. Enum's own hash is a Python call, made twice
    # per input record by the outcome counter.
    __hash__ = object.__hash__


class Outcome(NamedTuple):
    """One input record's outcome, as the metrics count it.

    >>> Outcome(Kind.DECISION, "approve")
    Outcome(kind=<Kind.DECISION: 'decision'>, detail='approve')
    """

    kind: Kind
    detail: str = ""  # a decision's outcome or a rejection's reason


LABEL, REPLAYED = Outcome(Kind.LABEL), Outcome(Kind.REPLAYED)
_DECIDED = {outcome: Outcome(Kind.DECISION, outcome) for outcome in OUTCOMES}  # one tuple each
AUDITED = "audited_version"  # checkpoint figure: the latest version whose engine events are audited


class OutRecord(NamedTuple):
    """A record to produce: ``role`` names the output topic, the partition is the processor's.

    A tuple, as one or two are built per input record.
    """

    role: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class PartitionProcessor:
    """Engine, audit chain and replay bounds of one input partition."""

    partition: int
    engine: DetectionEngine | Scorer
    chain: ChainState
    instance_id: str
    topics: TopicMap  # input topic names, for provenance
    pseudonym_key: bytes | None = None
    max_message_bytes: int = 64 * 1024
    replay_until: dict[str, int] = field(default_factory=dict)  # role -> first offset not yet committed
    positions: dict[str, int] = field(default_factory=dict)  # role -> next offset to read
    outcomes: Counter[Outcome] = field(default_factory=Counter)  # since this processor was made
    schema: WrittenSchema = field(default_factory=WrittenSchema)  # the chain's feature schema
    shared: ViewHistory | None = None  # the instance's shared view, when the partitions share a model
    audited: int = NO_VERSION  # partition 0: the latest version whose engine events are audited
    waiting_for: int | None = None  # the version the next transaction needs, while the view lacks it
    updates: list[SharedUpdate] = field(default_factory=list)  # for the learner, not yet produced

    def checkpoint_extra(self) -> dict[str, int]:
        """What the checkpoint keeps beside the engine's snapshot."""
        return {AUDITED: self.audited} if self.shared is not None else {}

    @property
    def scorer(self) -> Scorer:
        """The engine, a scorer of the shared view when the partitions share a model (``shared``)."""
        assert isinstance(self.engine, Scorer), "only partitions sharing a model have a scorer"
        return self.engine

    def committable_offsets(self) -> dict[str, int]:
        """Offsets to commit: never below what was committed before, even while replaying below it."""
        return {role: max(offset, self.replay_until.get(role, -1)) for role, offset in self.positions.items()}

    def process(self, role: str, offset: int, key: bytes | None, value: bytes | None) -> list[OutRecord]:
        """Handle one input record; never raises on bad input (it becomes a dead letter)."""
        self.positions[role] = offset + 1
        replaying = offset < self.replay_until.get(role, -1)
        started = time.perf_counter()
        engine = self.engine
        decision: Decision | None = None
        rejection: InvalidInput | None = None
        events: list[EngineEvent] = []
        try:
            if role != TRANSACTIONS:
                engine.process_label(decode_label(value, self.max_message_bytes))
            elif isinstance(engine, DetectionEngine):  # a model of its own (``shared`` is None)
                decision = engine.process_transaction(decode_transaction(value, self.max_message_bytes))
            else:
                decision, events = self._shared_transaction(
                    engine, decode_transaction(value, self.max_message_bytes), replaying
                )
                if self.waiting_for is not None:  # its close marks go out; it is read again later
                    self.positions[role] = offset
                    self.updates.extend(engine.pop_updates())
                    return []
        except InvalidInput as error:
            rejection = error
        elapsed_ms = 1000.0 * (time.perf_counter() - started)
        if isinstance(engine, DetectionEngine):
            events = engine.pop_events()
        else:
            updates = engine.pop_updates()
            if not replaying:  # the updates of replayed records were committed with them
                self.updates.extend(updates)
        if replaying:
            self.outcomes[REPLAYED] += 1
            return []

        if decision is None and rejection is None and not events:
            self.outcomes[LABEL] += 1  # a label learned quietly: the common case, nothing to write
            return []

        provenance = Provenance(self.topics.name(role), self.partition, offset, self.instance_id)
        outputs = [self._event(event, provenance) for event in events]
        if rejection is not None:
            outputs.extend(self._reject(rejection, provenance, key, value))
        elif decision is not None:
            schema = self.schema.record_if_new(decision.features, self.instance_id)
            if schema is not None:
                outputs.append(OutRecord(AUDIT, b"schema", self.chain.seal_encoded(schema)))
            record = decision_record(
                decision, self.schema.schema_id, provenance, elapsed_ms, self.pseudonym_key
            )
            audit = self.chain.seal_sorted(record)
            reply = orjson.dumps(decision_reply(decision, record["event_time"]))
            outputs.append(OutRecord(AUDIT, record["customer_id"].encode(), audit))
            outputs.append(OutRecord(DECISIONS, decision.transaction.transaction_id.encode(), reply))
            self.outcomes[_DECIDED[decision.outcome]] += 1
        else:
            self.outcomes[LABEL] += 1
        return outputs

    def _shared_transaction(
        self, scorer: Scorer, tx: Transaction, replaying: bool
    ) -> tuple[Decision | None, list[EngineEvent]]:
        """Score ``tx`` with the shared view, or note the version it waits for (never while
        replaying: replay rebuilds card state, which no view changes, and its decisions are dropped).

        Returns the decision and, for partition 0, the engine events of the versions it is the
        first to use.
        """
        assert self.shared is not None
        view = self.shared.view
        needed = scorer.required_version(tx)
        scorer.close_through(needed)
        if replaying:
            self.audited = max(self.audited, needed)
            return scorer.process_transaction(tx, _AtLeast(view, needed)), []
        if view.version < needed:
            self.waiting_for = needed
            return None, []
        events = self.shared.events_between(self.audited, needed) if self.partition == 0 else []
        self.audited = max(self.audited, needed)
        return scorer.process_transaction(tx, view), events

    def _event(self, event: EngineEvent, provenance: Provenance) -> OutRecord:
        record = event_record(event, self.engine.config.model.settled_kind, provenance)
        return OutRecord(AUDIT, b"event", self.chain.seal_encoded(record))

    def _reject(
        self, error: InvalidInput, provenance: Provenance, key: bytes | None, value: bytes | None
    ) -> list[OutRecord]:
        """The original bytes to the dead-letter topic, and an audit record saying which input was refused."""
        self.outcomes[Outcome(Kind.REJECTED, error.reason)] += 1
        headers = (
            ("dlq.reason", error.reason.encode()),
            ("dlq.detail", error.detail.encode()[:1024]),
            ("dlq.topic", provenance.topic.encode()),
            ("dlq.partition", str(provenance.partition).encode()),
            ("dlq.offset", str(provenance.offset).encode()),
            ("dlq.instance", provenance.instance_id.encode()),
        )
        audit = rejected_record(error, key, provenance, self.pseudonym_key)
        return [
            OutRecord(DEAD_LETTER, key, value or b"", headers),
            OutRecord(AUDIT, b"rejected", self.chain.seal_encoded(audit)),
        ]


class _AtLeast:
    """The view as a replayed transaction reads it: its state, reported at the version the
    transaction needs. Replay keeps only the card state the scoring leaves, which no view changes,
    so the view may be older or newer than the one the transaction was first scored with."""

    def __init__(self, view: ReadView, version: int) -> None:
        self._view, self.version = view, max(view.version, version)

    @property
    def terminals(self) -> TerminalTable:
        return self._view.terminals

    @property
    def model(self) -> FraudModel:
        return self._view.model

    @property
    def generation(self) -> int:
        return self._view.generation

    @property
    def drift_state(self) -> str:
        return self._view.drift_state
