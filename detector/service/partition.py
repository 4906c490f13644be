"""What the service does with one input partition's records, with no Kafka in sight.

A :class:`PartitionProcessor` owns the engine, the audit chain head and the replay bound of one
input partition (transactions partition ``p`` and labels partition ``p``, co-partitioned by
customer). For each input record it returns the records to produce: audit records (chained),
the compact decision, and dead letters. The Kafka loop only moves bytes in and out.

After a restart the engine is restored from a checkpoint that may be older than the committed
offsets; the records between the two are processed again to rebuild the state, but their outputs
were already committed, so they are dropped here (``replay_until``).
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
from detector.engine.outputs import EngineEvent
from detector.engine.policy import OUTCOMES
from detector.engine.records import InvalidInput, decode_label, decode_transaction
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
    engine: DetectionEngine
    chain: ChainState
    instance_id: str
    topics: TopicMap  # input topic names, for provenance
    pseudonym_key: bytes | None = None
    max_message_bytes: int = 64 * 1024
    replay_until: dict[str, int] = field(default_factory=dict)  # role -> first offset not yet committed
    positions: dict[str, int] = field(default_factory=dict)  # role -> next offset to read
    outcomes: Counter[Outcome] = field(default_factory=Counter)  # since this processor was made
    schema: WrittenSchema = field(default_factory=WrittenSchema)  # the chain's feature schema

    def committable_offsets(self) -> dict[str, int]:
        """Offsets to commit: never below what was committed before, even while replaying below it."""
        return {role: max(offset, self.replay_until.get(role, -1)) for role, offset in self.positions.items()}

    def process(self, role: str, offset: int, key: bytes | None, value: bytes | None) -> list[OutRecord]:
        """Handle one input record; never raises on bad input (it becomes a dead letter)."""
        self.positions[role] = offset + 1
        started = time.perf_counter()
        decision, rejection = None, None
        try:
            if role == TRANSACTIONS:
                decision = self.engine.process_transaction(decode_transaction(value, self.max_message_bytes))
            else:
                self.engine.process_label(decode_label(value, self.max_message_bytes))
        except InvalidInput as error:
            rejection = error
        elapsed_ms = 1000.0 * (time.perf_counter() - started)
        events = self.engine.pop_events()
        if offset < self.replay_until.get(role, -1):
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
            audit = self.chain.seal_encoded(record)
            reply = orjson.dumps(decision_reply(decision, record["event_time"]))
            outputs.append(OutRecord(AUDIT, record["customer_id"].encode(), audit))
            outputs.append(OutRecord(DECISIONS, decision.transaction.transaction_id.encode(), reply))
            self.outcomes[_DECIDED[decision.outcome]] += 1
        else:
            self.outcomes[LABEL] += 1
        return outputs

    def _event(self, event: EngineEvent, provenance: Provenance) -> OutRecord:
        record = event_record(event, self.engine.config.model.kind, provenance)
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
