"""The Kafka transaction that carries one batch: its outputs, due checkpoints and the input offsets.

confluent-kafka's exactly-once pattern: ``begin_transaction``, produce every output,
``send_offsets_to_transaction`` with the next offsets to read, ``commit_transaction``. A failure
is raised to the loop, whose recovery aborts the transaction with a new producer and rebuilds the
partitions from what was committed.

A transaction left open past ``FRAUD_TRANSACTION_TIMEOUT_MS`` is aborted by the broker, which bumps
the producer's epoch: librdkafka then reports "fenced by a newer instance" although there is none.
Such a failure is logged as ``transaction_timed_out``, with how long the transaction had been open.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from detector.engine.expiring import IN_MEMORY
from detector.service.checkpoints import StateChanges, write_checkpoint
from detector.service.clients import COMMIT_TIMEOUT_S, Clients
from detector.service.collector import collect_everything
from detector.service.engine_setup import engine_snapshot
from detector.service.fencing import InstanceFenced, fatal_cause, membership_taken, timed_out
from detector.service.health import Readiness
from detector.service.metrics import ServiceMetrics
from detector.service.partition import OutRecord
from detector.service.partitions import Partitions
from detector.service.topic_map import CHECKPOINTS, TopicMap

log = structlog.get_logger("detector.service")


class Transactions:
    """Begins, fills and commits the transactions of the clients' current producer."""

    def __init__(
        self,
        clients: Clients,
        topics: TopicMap,
        metrics: ServiceMetrics,
        readiness: Readiness,
        checkpoint_interval_s: float,
    ) -> None:
        self.clients = clients
        self.topics = topics
        self.metrics = metrics
        self.readiness = readiness
        self.checkpoint_interval_s = checkpoint_interval_s
        self.committed = 0
        self._last_checkpoint = time.monotonic()
        self._began = time.monotonic()  # when the open transaction began

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s

    def begin(self) -> None:
        assert self.clients.producer is not None
        self.clients.producer.begin_transaction()
        self._began = time.monotonic()
        self.metrics.began()

    def produce(self, out: OutRecord, partition: int) -> None:
        producer = self.clients.producer
        assert producer is not None
        topic = self.topics.name(out.role)
        while True:
            try:
                if out.headers:
                    producer.produce(
                        topic, out.value, key=out.key, partition=partition, headers=list(out.headers)
                    )
                else:  # an empty header list still costs a conversion per record
                    producer.produce(topic, out.value, key=out.key, partition=partition)
                return
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain
            except KafkaException as exception:  # e.g. fenced: the loop recovers
                self._explain_timeout(fatal_cause(producer, exception.args[0]))
                raise

    def write_checkpoints(self, owned: Partitions, partitions: list[int], periodic: bool = False) -> None:
        """Snapshots of ``partitions`` into the open transaction, at the positions it commits;
        ``periodic``: the checkpoint of every partition due each ``FRAUD_CHECKPOINT_INTERVAL_S``.

        A partition whose input has not moved since its last checkpoint is skipped.
        """
        assert self.clients.producer is not None
        for partition in partitions:
            state = owned[partition]
            if not state.checkpoint_due():
                continue
            processor, database = state.processor, state.state
            stages = _Stages()
            state.checkpointed = dict(processor.positions)
            state.checkpoint_written_at = time.time()
            changes = None
            if database is not None:
                assert database.lineage is not None  # given by recovery: reset, rebuilt or current
                changes = StateChanges(database.lineage, database.drain())
            stages.mark("drain")
            snapshot = engine_snapshot(processor.engine, database or IN_MEMORY)
            stages.mark("snapshot")
            checkpoint_id = write_checkpoint(
                self.clients.producer,
                self.topics.name(CHECKPOINTS),
                partition,
                snapshot,
                dict(processor.positions),
                extra=processor.checkpoint_extra(),
                state=changes,
            )
            stages.mark("produce")
            if database is not None and changes is not None:
                # Before the commit: if it fails, the database is a checkpoint ahead of the
                # committed one, which recovery sees and rebuilds from the changelog (docs/state.md).
                database.write(changes.changes, changes.lineage, checkpoint_id)
            stages.mark("local_write")
            log.info(
                "checkpoint_written",
                partition=partition,
                checkpoint_id=checkpoint_id,
                bytes=len(snapshot),
                state_changes=len(changes.changes) if changes is not None else None,
                seconds=stages.total(),  # the loop's pause for it
                stages=stages.seconds,
                offsets=processor.positions,
            )
        if periodic:
            self._last_checkpoint = time.monotonic()
            # Not at every checkpoint: a busy partition is checkpointed every few seconds
            # (FRAUD_CHECKPOINT_MAX_CHANGES), and a full collection walks every object.
            began = time.perf_counter()
            collect_everything()
            log.info("full_collection", seconds=round(time.perf_counter() - began, 4))

    def commit(self, owned: Partitions) -> None:
        """Send the offsets and commit; a failure is raised for the loop to recover from."""
        producer, consumer = self.clients.producer, self.clients.consumer
        assert producer is not None and consumer is not None
        processors = owned.processors()
        offsets = [
            TopicPartition(self.topics.name(role), partition, offset)
            for partition, processor in processors.items()
            for role, offset in processor.committable_offsets().items()
            if offset >= 0
        ]
        commit_started = time.perf_counter()
        try:
            group = consumer.consumer_group_metadata()
            _retrying(lambda: self.clients.send_offsets(offsets, group))
            _retrying(lambda: producer.commit_transaction(COMMIT_TIMEOUT_S))
            self.committed += 1
            self.readiness.committed()
            self.metrics.committed(processors, commit_started, owned.checkpoint_times())
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if not self._explain_timeout(error):
                log.error("transaction_failed", error=str(error), abortable=error.txn_requires_abort())
            self.metrics.aborted()
            if membership_taken(error):
                raise InstanceFenced(error) from None  # the loop rejoins once, or stops (fencing.py)
            raise  # the loop's recovery: a new producer aborts this transaction and state is rebuilt

    def _explain_timeout(self, error: KafkaError) -> bool:
        """Whether ``error`` is the broker aborting the open transaction for its age (logged)."""
        return timed_out(error, time.monotonic() - self._began, self.clients.settings.transaction_timeout_ms)

    def checkpoint_in_own_transaction(self, owned: Partitions, partitions: list[int]) -> None:
        self.begin()
        self.write_checkpoints(owned, partitions)
        self.commit(owned)


class _Stages:
    """Seconds spent in each stage of a checkpoint, for its log line: what its pause is made of."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._began = self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 4)
        self._last = now

    def total(self) -> float:
        return round(self._last - self._began, 4)


def _retrying(action: Callable[[], object], attempts: int = 3) -> None:
    """Run a transactional call, retrying the errors Kafka marks retriable."""
    for attempt in range(attempts):
        try:
            action()
            return
        except KafkaException as exception:
            if not exception.args[0].retriable() or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
