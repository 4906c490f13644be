"""Bring one input partition back to where the committed output says it is.

Three durable facts are combined when a partition is assigned (at start, after a rebalance, or
after an aborted transaction):

* the latest checkpoint: the engine state as of some input offsets ``S`` (its large state in the
  partition's local database, or rebuilt there from the checkpoint topic: state_files.py);
* the group's committed offsets ``C`` (``C >= S``): everything before ``C`` has committed output;
* the last committed audit record of the partition: the head of its hash chain.

The engine is restored at ``S`` and the consumer starts there; records in ``[S, C)`` rebuild the
state without emitting anything (their output is already committed), and output resumes at ``C``
with the chain continuing from its committed head. No decision is lost, none is written twice.
A checkpoint that cannot be restored (written by an incompatible version, or damaged) is logged and
treated as absent: the state is rebuilt from the oldest retained input, outputs still once each.
The configured engine settings apply to a restored engine; a checkpoint whose state was built with
other features, model, drift settings or label horizon is treated as absent in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from confluent_kafka import Consumer

from detector.audit.chain import ChainState
from detector.audit.records import chained_for, decode_record
from detector.engine.engine import DetectionEngine
from detector.engine.scorer import Scorer
from detector.service.checkpoints import Checkpoint, load_checkpoint
from detector.service.engine_setup import PartitionEngines
from detector.service.reading import read_to_end, watermarks
from detector.service.state_files import StateFiles, fresh_stores, restored_with_state
from detector.state.database import StateDatabase

log = structlog.get_logger("detector.service")
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PartitionStart:
    """Where a partition resumes: its engine, chain head, first offsets to read and replay bounds."""

    engine: DetectionEngine | Scorer
    chain: ChainState
    start_offsets: dict[str, int]  # role -> first offset to read
    replay_until: dict[str, int]  # role -> first offset whose output is not committed yet
    checkpoint_id: str | None
    checkpoint_written_at: float | None  # epoch seconds, for the checkpoint age metric
    extra: dict[str, int]  # the service's own figures kept with the checkpoint
    state: StateDatabase | None  # the engine's stores on disk (FRAUD_STATE_STORE=disk)


def recover_partition(
    *,
    partition: int,
    topics: dict[str, str],  # role -> input topic name
    committed: dict[str, int],  # role -> committed offset, or a negative value if none
    reader: Consumer,
    checkpoint_topic: str,
    audit_topic: str,
    engines: PartitionEngines,
    chain_key: bytes | None,
    state_files: StateFiles | None,
) -> PartitionStart:
    state = state_files.open(partition) if state_files is not None else None
    try:
        restored = _restored(reader, checkpoint_topic, partition, engines, state)
        if restored is None:  # none: rebuild from the input
            checkpoint, engine = None, engines.new(partition, fresh_stores(state))
        else:
            checkpoint, engine = restored
        starts: dict[str, int] = {}
        for role, topic in topics.items():
            low, _ = watermarks(reader, topic, partition, _TIMEOUT_S)
            if checkpoint is not None and role in checkpoint.offsets:
                starts[role] = max(checkpoint.offsets[role], low)
            else:
                starts[role] = low  # no snapshot: rebuild from the oldest retained input
        chain = read_chain_head(reader, audit_topic, partition, chain_key)
    except BaseException:
        if state_files is not None and state is not None:
            state_files.close(state)
        raise
    replay_until = {role: offset for role, offset in committed.items() if offset > starts[role]}
    return PartitionStart(
        engine=engine,
        chain=chain,
        start_offsets=starts,
        replay_until=replay_until,
        checkpoint_id=checkpoint.checkpoint_id if checkpoint else None,
        checkpoint_written_at=checkpoint.written_at if checkpoint else None,
        extra=checkpoint.extra if checkpoint else {},
        state=state,
    )


def _restored(
    reader: Consumer, topic: str, partition: int, engines: PartitionEngines, state: StateDatabase | None
) -> tuple[Checkpoint, DetectionEngine | Scorer] | None:
    """The latest checkpoint and its engine under the configured settings; None if there is none,
    or (logged) if it cannot serve."""
    checkpoint_id = None
    try:
        checkpoint = load_checkpoint(reader, topic, partition)
        if checkpoint is None:
            return None
        checkpoint_id = checkpoint.checkpoint_id
        engine = restored_with_state(
            checkpoint,
            state,
            reader,
            topic=topic,
            partition=partition,
            restore=lambda stores: engines.restore(checkpoint.snapshot, partition, stores),
        )
    except (
        ValueError
    ) as error:  # e.g. written by an incompatible version, by another kind of engine, or damaged
        problem, detail = "checkpoint_unreadable", str(error)
    else:
        try:
            engines.reconfigure(engine)
            return checkpoint, engine
        except ValueError as error:  # e.g. another model: it learns afresh from the retained input
            problem, detail = "checkpoint_config_changed", str(error)
    log.warning(problem, partition=partition, checkpoint_id=checkpoint_id, error=detail)
    return None


def read_chain_head(reader: Consumer, topic: str, partition: int, key: bytes | None) -> ChainState:
    """The chain state after the last committed audit record of ``partition`` (genesis if none).

    A record the detector cannot have written (not JSON, no chain of this partition), e.g. one
    produced into the topic by hand, is logged and passed over: the chain goes on from the last
    record of its own, and ``verify`` reports the foreign one where it stands.
    """
    low, high = watermarks(reader, topic, partition, _TIMEOUT_S)
    span = 64
    while True:
        start = max(low, high - span)
        last = None
        for message in read_to_end(reader, topic, partition, start, _TIMEOUT_S):
            record = decode_record(message.value())
            if chained_for(record, partition):
                last = record
            else:
                log.error("audit_record_foreign", partition=partition, offset=message.offset())
        if last is not None:
            return ChainState.after(last, key)
        if start <= low:
            return ChainState(partition=partition, key=key)
        span *= 16  # the tail held only aborted records, markers or foreign records: look further back
