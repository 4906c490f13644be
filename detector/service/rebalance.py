"""Partitions coming and going: the rebalance callbacks, and recovering partitions from committed state.

Partitions are assigned with the range strategy, so transactions ``p`` and labels ``p`` go to the
same instance. The callbacks run inside ``consume()``, between transactions: a revoked partition
is checkpointed in a transaction of its own before it goes. A Kafka failure inside a callback is
kept and raised once ``consume()`` returns, and handled like one in the loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.scorer import Scorer
from detector.engine.shared import NO_VERSION
from detector.service.client_logs import kafka_errors_unmasked
from detector.service.clients import Clients
from detector.service.collector import collect_everything
from detector.service.engine_setup import PartitionEngines
from detector.service.fencing import InstanceFenced
from detector.service.health import Readiness
from detector.service.metrics import ServiceMetrics
from detector.service.parallel_recovery import MOST_AT_ONCE, recover_each
from detector.service.partition import AUDITED, PartitionProcessor
from detector.service.partitions import Partitions
from detector.service.recovery import PartitionStart, recover_partition
from detector.service.settings import ServiceSettings
from detector.service.shared_state import ViewHistory
from detector.service.topic_map import TopicMap
from detector.service.transaction import Transactions

log = structlog.get_logger("detector.service")


class Rebalancing:
    """Recovers assigned partitions, checkpoints revoked ones, and forgets lost ones."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        engine_config: EngineConfig,
        topics: TopicMap,
        clients: Clients,
        partitions: Partitions,
        transactions: Transactions,
        metrics: ServiceMetrics,
        readiness: Readiness,
        stopping: threading.Event,
        shared: ViewHistory | None = None,
    ) -> None:
        self.settings = settings
        self.engines = PartitionEngines(engine_config, shared=shared is not None)
        self.shared = shared
        self.topics = topics
        self.clients = clients
        self.partitions = partitions
        self.transactions = transactions
        self.metrics = metrics
        self.readiness = readiness
        self.stopping = stopping
        self.failure: KafkaException | None = None  # raised once consume() returns
        self._pseudonym_key = settings.pseudonym_key.encode() or None
        self._chain_key = settings.audit_hmac_key.encode() or None

    def raise_kept_failure(self) -> None:
        """Raise a failure kept from a callback of the last ``consume()``, before any of its messages:
        recovery rewinds to the committed state."""
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    # -- the consumer's callbacks ---------------------------------------------------------------

    def on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        if consumer is not self.clients.consumer:
            return  # a replaced consumer, closing late
        partitions = sorted({tp.partition for tp in assigned})
        log.info("partitions_assigned", partitions=partitions)
        with self._failure_kept_for_the_loop():
            self.recover(partitions, in_rebalance=True)
            self.readiness.assigned = True

    def on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        if consumer is not self.clients.consumer:
            return  # a replaced consumer, closing late
        partitions = sorted({tp.partition for tp in revoked if tp.partition in self.partitions})
        log.info("partitions_revoked", partitions=partitions)
        if partitions and not self.stopping.is_set():
            with self._failure_kept_for_the_loop():  # the partitions go all the same
                self.transactions.checkpoint_in_own_transaction(self.partitions, partitions)
        self._forget(partitions)

    def on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        if consumer is not self.clients.consumer:
            return  # a replaced consumer, closing late
        partitions = sorted({tp.partition for tp in lost})
        log.warning("partitions_lost", partitions=partitions)
        self._forget(partitions)

    def _forget(self, partitions: list[int]) -> None:
        self.partitions.drop(partitions)
        self.metrics.forget(partitions)
        self.readiness.assigned = False

    @contextmanager
    def _failure_kept_for_the_loop(self) -> Iterator[None]:
        """Keep a Kafka failure inside a rebalance callback for the loop to raise.

        Let out of the callback, an error raised by librdkafka (say an abort refused after a broker
        restart) comes out of ``consume()`` as a bare ``KafkaError``, which no ``except`` clause
        matches, and the service exits. Caught here, it is a :class:`KafkaException` again.
        """
        try:
            with kafka_errors_unmasked():
                yield
        except KafkaException as failure:
            log.warning("rebalance_callback_failed", error=str(failure))
            self.failure = self.failure or failure

    # -- recovery -------------------------------------------------------------------------------

    def _model_state(self, engine: DetectionEngine | Scorer) -> dict[str, int]:
        """The model a recovered partition scores with, for its log line: its own, or the shared one."""
        if isinstance(engine, DetectionEngine):
            return {"model_generation": engine.generation, "labels_learned": engine.model.labels_learned}
        assert self.shared is not None
        view = self.shared.view
        return {
            "model_generation": view.generation,
            "shared_version": view.version,
            "closed_epoch": engine.closed,
        }

    def recover(self, partitions: list[int], in_rebalance: bool) -> None:
        """(Re)build the state of ``partitions`` from committed state and point the consumer there.

        Inside a rebalance callback the start offsets are set by ``assign``; outside one (after an
        aborted transaction) the consumer already owns the partitions and is rewound with ``seek``.
        """
        consumer = self.clients.consumer
        assert consumer is not None
        began = time.monotonic()
        self.clients.abort_left_open(partitions, with_offsets=not in_rebalance)
        inputs = self.topics.inputs
        committed = self.clients.committed(
            [TopicPartition(topic, p) for p in partitions for topic in inputs.values()]
        )

        def recover_one(partition: int, reader: Consumer) -> PartitionStart:
            offsets = {self.topics.role(tp.topic): tp.offset for tp in committed if tp.partition == partition}
            return recover_partition(
                partition=partition,
                topics=inputs,
                committed=offsets,
                reader=reader,
                checkpoint_topic=self.settings.checkpoint_topic,
                audit_topic=self.settings.audit_topic,
                engines=self.engines,
                chain_key=self._chain_key,
                state_files=self.partitions.state_files,
            )

        readers = self.clients.readers_for(min(len(partitions), MOST_AT_ONCE))
        starts = recover_each(partitions, readers, recover_one) if partitions else {}
        start_at: list[TopicPartition] = []
        for partition, start in starts.items():
            processor = PartitionProcessor(
                partition=partition,
                engine=start.engine,
                chain=start.chain,
                instance_id=self.settings.instance_id,
                topics=self.topics,
                pseudonym_key=self._pseudonym_key,
                max_message_bytes=self.settings.max_message_bytes,
                replay_until=start.replay_until,
                positions=dict(start.start_offsets),
                shared=self.shared,
                audited=start.extra.get(AUDITED, NO_VERSION),
            )
            checkpointed = dict(start.start_offsets) if start.checkpoint_id is not None else None
            self.partitions.assign(processor, checkpointed, start.checkpoint_written_at, start.state)
            self.metrics.owned(partition, start.checkpoint_written_at)
            start_at.extend(
                TopicPartition(inputs[role], partition, offset)
                for role, offset in start.start_offsets.items()
            )
            log.info(
                "partition_recovered",
                partition=partition,
                checkpoint_id=start.checkpoint_id,
                start_offsets=start.start_offsets,
                replay_until=start.replay_until,
                chain_seq=start.chain.next_seq,
                transactions_scored=start.engine.stats["transactions_scored"],
                **self._model_state(start.engine),
            )
        log.info("recovery_done", partitions=partitions, seconds=round(time.monotonic() - began, 3))
        collect_everything()  # the restored state is frozen at once, not walked by later collections
        if in_rebalance:
            consumer.assign(start_at)  # assigning also clears any pause
        else:
            consumer.resume(start_at)
            for tp in start_at:
                rewind(consumer, tp)


def rewind(consumer: Consumer, tp: TopicPartition) -> None:
    """Seek ``tp`` back to what was committed; :class:`InstanceFenced` if the consumer no longer
    owns it: another process joined the group as this instance, and a fenced consumer learns it at
    its next ``consume()``, which a recovery retried in a loop would never reach (fencing.py)."""
    try:
        consumer.seek(tp)
    except KafkaException as exception:
        if exception.args[0].code() == KafkaError._STATE:
            raise InstanceFenced(exception.args[0]) from None
        raise
