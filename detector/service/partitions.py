"""The input partitions this instance owns, each with all the state the service keeps for it.

One :class:`OwnedPartition` per partition holds its processor, the positions of its last
checkpoint, when its first checkpoint is due and whether its labels are paused, so assigning,
revoking, losing or recovering a partition replaces or drops that state in one place.

A recovered partition is checkpointed :data:`FIRST_CHECKPOINT_AFTER_S` after its recovery rather
than a whole checkpoint interval after the last one: a process killed before its first
checkpoint made the next one replay the partition again from the same old checkpoint (or from
offset 0), and each restart in a crash loop replayed more.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog
from confluent_kafka import Consumer, Message, TopicPartition

from detector.service.engine_setup import queued_labels
from detector.service.partition import PartitionProcessor
from detector.service.state_files import StateFiles
from detector.state.database import StateDatabase

log = structlog.get_logger("detector.service")
FIRST_CHECKPOINT_AFTER_S = 2.0


@dataclass
class OwnedPartition:
    """What the service holds for one owned input partition."""

    processor: PartitionProcessor
    state: StateDatabase | None = None  # its engine's stores on disk (FRAUD_STATE_STORE=disk)
    checkpointed: dict[str, int] | None = None  # input positions of its last checkpoint, if any
    checkpoint_written_at: float | None = None  # and when it was written (epoch seconds)
    labels_paused: bool = False  # its labels wait for its transactions
    first_checkpoint_at: float | None = None  # time.monotonic() when its first checkpoint is due
    # Transactions read while the partition waits for a shared version, in offset order: processed
    # once it has come (docs/shared-service.md).
    backlog: list[Message] = field(default_factory=list)
    transactions_paused: bool = False  # its backlog is full: the consumer fetches no more of it

    def checkpoint_due(self) -> bool:
        """Whether its input has moved since its last checkpoint."""
        return self.checkpointed != self.processor.positions


class Partitions:
    """The owned partitions by number."""

    def __init__(self, state_files: StateFiles | None = None, max_changes: int = 5_000) -> None:
        self._owned: dict[int, OwnedPartition] = {}
        self.state_files = state_files  # where the partitions' state databases are opened
        self.max_changes = max_changes  # a partition is checkpointed once this many entries changed

    def __bool__(self) -> bool:
        return bool(self._owned)

    def __contains__(self, partition: int) -> bool:
        return partition in self._owned

    def __iter__(self) -> Iterator[int]:
        return iter(self._owned)

    def __getitem__(self, partition: int) -> OwnedPartition:
        return self._owned[partition]

    def get(self, partition: int) -> OwnedPartition | None:
        return self._owned.get(partition)

    def processor(self, partition: int) -> PartitionProcessor | None:
        owned = self._owned.get(partition)
        return owned.processor if owned is not None else None

    def processors(self) -> dict[int, PartitionProcessor]:
        """By partition; safe to call from another thread (it copies the items at once)."""
        return {partition: owned.processor for partition, owned in list(self._owned.items())}

    def checkpoint_times(self) -> dict[int, float]:
        """When each partition's last checkpoint was written, for those that have one."""
        return {
            partition: owned.checkpoint_written_at
            for partition, owned in self._owned.items()
            if owned.checkpoint_written_at is not None
        }

    def assign(
        self,
        processor: PartitionProcessor,
        checkpointed: dict[str, int] | None,
        checkpoint_written_at: float | None = None,
        state: StateDatabase | None = None,
    ) -> None:
        """Own ``processor``'s partition afresh: a checkpoint of an aborted transaction never happened,
        and a pause does not outlive an assignment or a rewind."""
        self.drop([processor.partition])
        first_checkpoint_at = time.monotonic() + FIRST_CHECKPOINT_AFTER_S
        self._owned[processor.partition] = OwnedPartition(
            processor, state, checkpointed, checkpoint_written_at, first_checkpoint_at=first_checkpoint_at
        )

    def changes_due(self) -> list[int]:
        """Partitions whose state changed enough since their last checkpoint to write one now: it
        bounds the pause a checkpoint makes and the changes held in memory."""
        return [
            partition
            for partition, owned in self._owned.items()
            if owned.state is not None and owned.state.changed >= self.max_changes
        ]

    def first_checkpoints_due(self) -> list[int]:
        """Partitions recovered long enough ago for their first checkpoint, each given once."""
        now = time.monotonic()
        due = [
            partition
            for partition, owned in self._owned.items()
            if owned.first_checkpoint_at is not None and owned.first_checkpoint_at <= now
        ]
        for partition in due:
            self._owned[partition].first_checkpoint_at = None
        return due

    def drop(self, partitions: list[int]) -> None:
        """Revoked or lost partitions, or their state once it is ahead of what was committed."""
        for partition in partitions:
            owned = self._owned.pop(partition, None)
            if owned is not None and owned.state is not None and self.state_files is not None:
                self.state_files.close(owned.state)

    def clear(self) -> None:
        self.drop(list(self._owned))

    def hold_labels_ahead_of_transactions(self, consumer: Consumer, labels_topic: str, limit: int) -> None:
        """Pause a partition's labels while too many wait for event time; resume once they drain.

        Labels read far ahead of their transactions wait in the engine's queue, which refuses
        labels beyond ``limit`` (``max_queued_labels``). Pausing at half of it keeps every label.
        """
        for partition, owned in self._owned.items():
            queued = queued_labels(owned.processor.engine)
            labels = [TopicPartition(labels_topic, partition)]
            if queued >= limit // 2 and not owned.labels_paused:
                consumer.pause(labels)
                owned.labels_paused = True
                log.info("labels_paused", partition=partition, queued=queued)
            elif queued <= limit // 4 and owned.labels_paused:
                consumer.resume(labels)
                owned.labels_paused = False
                log.info("labels_resumed", partition=partition, queued=queued)
