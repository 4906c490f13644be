"""The detector service: consume, score, and commit outputs with input offsets in one Kafka transaction.

The loop follows confluent-kafka's exactly-once pattern: for each batch, ``begin_transaction``,
produce every output (audit, decisions, dead letters, due checkpoints), ``send_offsets_to_transaction``
with the next offsets to read, ``commit_transaction``. On an error that requires an abort, the
transaction is aborted and every assigned partition is recovered from its committed state
(:mod:`detector.service.recovery`); a fatal producer error does the same with a new producer.

Rebalances: partitions are assigned with the range strategy, so transactions ``p`` and labels ``p``
go to the same instance. Callbacks run inside ``consume()``, between transactions: a revoked
partition is checkpointed in a transaction of its own before it goes. A Kafka failure inside a
callback is kept and raised once ``consume()`` returns, and handled like one in the loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from detector.engine.config import EngineConfig
from detector.kafka_config import client_config
from detector.service.checkpoints import write_checkpoint
from detector.service.collector import collect_after_batch, collect_everything
from detector.service.deadline import call_within
from detector.service.health import serving
from detector.service.metrics import ServiceMetrics
from detector.service.partition import (
    AUDIT,
    DEAD_LETTER,
    DECISIONS,
    LABELS,
    TRANSACTIONS,
    OutRecord,
    PartitionProcessor,
)
from detector.service.reading import reader_config
from detector.service.recovery import recover_partition
from detector.service.settings import ConfigurationError, ServiceSettings
from detector.service.topics import ensure_topics

log = structlog.get_logger("detector.service")
_KAFKA_TIMEOUT_S = 30.0
_COMMIT_TIMEOUT_S = 10.0  # bounds how long a stop request waits behind a commit to a vanished broker
_STALLED_AFTER_S = 5.0
_ABANDON_AFTER_S = 5.0  # past a call's own timeout: it is wedged in librdkafka (see deadline.py)


class DetectorService:
    """One detector instance: a consumer in the group, a transactional producer, per-partition state."""

    def __init__(
        self,
        settings: ServiceSettings,
        engine_config: EngineConfig,
        environ: Mapping[str, str],
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.engine_config = engine_config
        self.client = client_config(settings.bootstrap_servers, environ=environ)
        self.roles = {settings.transactions_topic: TRANSACTIONS, settings.labels_topic: LABELS}
        self.topics = {role: topic for topic, role in self.roles.items()}
        self.outputs = {
            AUDIT: settings.audit_topic,
            DECISIONS: settings.decisions_topic,
            DEAD_LETTER: settings.dead_letter_topic,
        }
        self.processors: dict[int, PartitionProcessor] = {}
        self._checkpointed: dict[int, dict[str, int]] = {}  # partition -> positions of its last checkpoint
        self._labels_paused: set[int] = set()  # partitions whose labels wait for their transactions
        self._callback_failure: KafkaException | None = None  # raised once consume() returns
        self.stopping = stopping or threading.Event()
        self._assigned = False  # owns partitions and holds their state
        self._brokers_down = False  # the clients report no broker reachable
        self._progress = time.monotonic()  # last time a consume or a commit returned
        self.heartbeat = time.monotonic()
        self.transactions_committed = 0
        self.metrics = ServiceMetrics()
        self._last_checkpoint = time.monotonic()
        self._pseudonym_key = settings.pseudonym_key.encode() or None
        self._chain_key = settings.audit_hmac_key.encode() or None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._reader: Consumer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM / SIGINT), then checkpoint and leave the group.

        Metrics and health are served from before the first connection to after the last.
        """
        with serving(
            self.settings.metrics_port, self.metrics.registry, lambda: self.heartbeat, lambda: self.ready
        ):
            partitions = ensure_topics(self._connected_admin(), self.settings)
            log.info("topics_ready", input_partitions=partitions)
            self._producer = self._new_producer()
            self._reader = Consumer(reader_config(self.client, f"{self.settings.group_id}-reader"))
            self._consumer = self._new_consumer()
            try:
                while not self.stopping.is_set():
                    try:
                        self._run_batch()
                    except KafkaException as exception:  # fatal ones too: a new producer is the remedy
                        self._resynchronise(exception)
            finally:
                self._shutdown()

    def _connected_admin(self) -> AdminClient:
        """An admin client once a broker answers; refused credentials or TLS end the start at once.

        Without this check a wrong password surfaces only after a 30 s metadata timeout, as a
        transport failure that does not say why.
        """
        refused: list[KafkaError] = []

        def on_error(error: KafkaError) -> None:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
                refused.append(error)

        admin = AdminClient({**self.client, "error_cb": on_error})
        deadline = time.monotonic() + _KAFKA_TIMEOUT_S
        while True:
            try:
                admin.list_topics(timeout=1.0)
                return admin
            except KafkaException as exception:
                admin.poll(0)
                if refused:
                    raise ConfigurationError(f"Kafka refused the connection: {refused[0].str()}") from None
                if time.monotonic() > deadline:
                    where = self.settings.bootstrap_servers
                    reason = exception.args[0].str()
                    raise ConfigurationError(f"no Kafka broker answered at {where}: {reason}") from None

    @property
    def ready(self) -> bool:
        """What ``/readyz`` reports: owns partitions, the brokers answer, and the loop is not stuck
        in a Kafka call (a commit waiting on a vanished broker blocks for its whole timeout)."""
        return (
            self._assigned and not self._brokers_down and time.monotonic() - self._progress < _STALLED_AFTER_S
        )

    def stop(self) -> None:
        self.stopping.set()

    def _shutdown(self) -> None:
        self._assigned = False
        try:
            if self.processors:
                self._checkpoint_in_own_transaction(list(self.processors))
        except KafkaException as error:  # e.g. stopping while the broker is away: the last checkpoint stands
            log.warning("final_checkpoint_skipped", error=str(error))
        finally:
            if self._consumer is not None:
                self._consumer.close()  # leaves the group at once, so partitions move without waiting
            if self._reader is not None:
                self._reader.close()
            if self._producer is not None:
                self._producer.flush(_KAFKA_TIMEOUT_S)
                self._producer = None  # its connections close now, not when the service object goes
            log.info("stopped", transactions_committed=self.transactions_committed)

    # -- the transactional loop -----------------------------------------------------------------

    def _run_batch(self) -> None:
        assert self._consumer is not None and self._producer is not None
        messages = self._consumer.consume(self.settings.batch_size, self.settings.batch_timeout_ms / 1000.0)
        self.heartbeat = self._progress = time.monotonic()
        if self._callback_failure is not None:
            failure, self._callback_failure = self._callback_failure, None
            raise failure  # before any of the messages: recovery rewinds to the committed state
        self.metrics.update_lag(self._consumer, self.processors, self.topics)
        checkpoint_due = time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval_s
        if not messages and not (checkpoint_due and self.processors):
            return
        self._producer.begin_transaction()
        self.metrics.began()
        for message in messages:
            self._handle(message)
        self._hold_labels_ahead_of_transactions()
        if checkpoint_due:
            self._write_checkpoints(list(self.processors))
        self._commit()
        collect_after_batch()

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.warning("consume_error", error=str(error))
            return
        processor = self.processors.get(message.partition())
        if processor is None:  # a straggler from a partition revoked in this very poll
            return
        role = self.roles[message.topic()]
        outputs = processor.process(role, message.offset(), message.key(), message.value())
        for out in outputs:
            self._produce(out, message.partition())
        self.metrics.consumed_record(role, message, emitted=bool(outputs))

    def _resynchronise(self, cause: KafkaException) -> None:
        """After a Kafka failure (e.g. the broker went away): start again from what was committed.

        A new transactional producer fences the old one and aborts its open transaction; every
        partition is then recovered from its checkpoint and committed offsets. Until that succeeds
        (the broker answers again) the instance is not ready, and retries with a growing pause. A
        consumer whose committed offsets never come although the producer could be initialised is
        replaced by a new member of the group, which is assigned its partitions as at a start.
        """
        log.warning("kafka_failure", error=str(cause))
        self._brokers_down = True
        self._callback_failure = None  # recovered from below, whichever failure came first
        assert self._consumer is not None
        # What the consumer owns, not what has a processor: an assignment whose recovery failed
        # has none. The processors go at once: their state is ahead of what was committed, and a
        # stop before recovery completes must not checkpoint it with their positions.
        partitions = sorted({tp.partition for tp in self._consumer.assignment()})
        self.processors.clear()
        # The old producer goes before a new one is made: alive, it would go on sending the aborted
        # transaction's queued records once the broker is back, while the new one fences it. (An
        # abandoned call's thread may still hold it; then it goes when librdkafka lets go.)
        self._producer = None
        delay = 0.5
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()  # waiting for Kafka is alive, not stuck
            try:
                self._producer = self._new_producer()
                self._recover(partitions, in_rebalance=False)
                self._assigned = self._assigned or bool(partitions)  # also when assigning had failed
                self._brokers_down = False
                log.info("kafka_resynchronised", partitions=sorted(self.processors))
                return
            except ConsumerStalled as exception:
                log.warning("consumer_stalled", error=str(exception))
                self._replace_consumer()
                self._brokers_down = False  # the producer has just been initialised
                return  # the partitions come back through the new consumer's assignment
            except KafkaException as exception:
                log.warning("kafka_unavailable", error=str(exception), retry_in_s=delay)
                self.stopping.wait(delay)
                delay = min(2 * delay, 10.0)

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback: readiness drops while no broker can be reached."""
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._brokers_down = True
        log.warning("kafka_client_error", error=str(error))

    def _hold_labels_ahead_of_transactions(self) -> None:
        """Pause a partition's labels while too many wait for event time; resume once they drain.

        Labels read far ahead of their transactions wait in the engine's queue, which refuses
        labels beyond ``max_queued_labels``. Pausing at half of it keeps every label.
        """
        assert self._consumer is not None
        limit = self.engine_config.max_queued_labels
        for partition, processor in self.processors.items():
            queued = len(processor.engine.label_queue)
            labels = [TopicPartition(self.settings.labels_topic, partition)]
            if queued >= limit // 2 and partition not in self._labels_paused:
                self._consumer.pause(labels)
                self._labels_paused.add(partition)
                log.info("labels_paused", partition=partition, queued=queued)
            elif queued <= limit // 4 and partition in self._labels_paused:
                self._consumer.resume(labels)
                self._labels_paused.discard(partition)
                log.info("labels_resumed", partition=partition, queued=queued)

    def _produce(self, out: OutRecord, partition: int) -> None:
        assert self._producer is not None
        while True:
            try:
                topic = self.outputs[out.role]
                if out.headers:
                    self._producer.produce(
                        topic, out.value, key=out.key, partition=partition, headers=list(out.headers)
                    )
                else:  # an empty header list still costs a conversion per record
                    self._producer.produce(topic, out.value, key=out.key, partition=partition)
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let deliveries drain

    def _commit(self) -> None:
        """Send the offsets and commit; a failure leaves the transaction to :meth:`_resynchronise`."""
        assert self._consumer is not None and self._producer is not None
        offsets = [
            TopicPartition(self.topics[role], partition, offset)
            for partition, processor in self.processors.items()
            for role, offset in processor.committable_offsets().items()
            if offset >= 0
        ]
        commit_started = time.perf_counter()
        try:
            group = self._consumer.consumer_group_metadata()
            _retrying(lambda: self._send_offsets(offsets, group))
            _retrying(lambda: self._producer.commit_transaction(_COMMIT_TIMEOUT_S))
            self.transactions_committed += 1
            self._brokers_down = False
            self._progress = time.monotonic()
            self.metrics.committed(self.processors, commit_started)
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            log.error("transaction_failed", error=str(error), abortable=error.txn_requires_abort())
            self.metrics.aborted()
            raise  # _resynchronise: a new producer aborts this transaction and state is rebuilt

    def _send_offsets(self, offsets: list[TopicPartition], group: Any) -> None:
        """``send_offsets_to_transaction``, abandoned if it outlives its own timeout (deadline.py)."""
        assert self._producer is not None
        producer = self._producer
        call_within(
            lambda: producer.send_offsets_to_transaction(offsets, group, _COMMIT_TIMEOUT_S),
            _COMMIT_TIMEOUT_S + _ABANDON_AFTER_S,
            "send_offsets_to_transaction",
        )

    # -- checkpoints ----------------------------------------------------------------------------

    def _write_checkpoints(self, partitions: list[int]) -> None:
        """Snapshots of ``partitions`` into the open transaction, at the positions it commits.

        A partition whose input has not moved since its last checkpoint is skipped.
        """
        assert self._producer is not None
        for partition in partitions:
            processor = self.processors[partition]
            if self._checkpointed.get(partition) == processor.positions:
                continue
            self._checkpointed[partition] = dict(processor.positions)
            snapshot = processor.engine.snapshot()
            checkpoint_id = write_checkpoint(
                self._producer, self.settings.checkpoint_topic, partition, snapshot, dict(processor.positions)
            )
            log.info(
                "checkpoint_written",
                partition=partition,
                checkpoint_id=checkpoint_id,
                bytes=len(snapshot),
                offsets=processor.positions,
            )
        self._last_checkpoint = time.monotonic()
        collect_everything()  # the loop pauses for the snapshots anyway

    def _checkpoint_in_own_transaction(self, partitions: list[int]) -> None:
        assert self._producer is not None
        self._producer.begin_transaction()
        self.metrics.began()
        self._write_checkpoints(partitions)
        self._commit()

    # -- partition ownership --------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing late
        partitions = sorted({tp.partition for tp in assigned})
        log.info("partitions_assigned", partitions=partitions)
        with self._failure_kept_for_the_loop():
            self._recover(partitions, in_rebalance=True)
            self._assigned = True

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing late
        partitions = sorted({tp.partition for tp in revoked} & set(self.processors))
        log.info("partitions_revoked", partitions=partitions)
        if partitions and not self.stopping.is_set():
            with self._failure_kept_for_the_loop():  # the partitions go all the same
                self._checkpoint_in_own_transaction(partitions)
        for partition in partitions:
            del self.processors[partition]
            self._labels_paused.discard(partition)
        self.metrics.forget(partitions)
        self._assigned = False

    def _on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing late
        partitions = sorted({tp.partition for tp in lost})
        log.warning("partitions_lost", partitions=partitions)
        for partition in partitions:
            self.processors.pop(partition, None)
            self._labels_paused.discard(partition)
        self.metrics.forget(partitions)
        self._assigned = False

    @contextmanager
    def _failure_kept_for_the_loop(self) -> Iterator[None]:
        """Keep a Kafka failure inside a rebalance callback for :meth:`_run_batch` to raise.

        Let out of the callback, an error raised by librdkafka (say an abort refused after a broker
        restart) comes out of ``consume()`` as a bare ``KafkaError``, which no ``except`` clause
        matches, and the service exits. Caught here, it is a :class:`KafkaException` again.
        """
        try:
            yield
        except KafkaException as failure:
            log.warning("rebalance_callback_failed", error=str(failure))
            self._callback_failure = self._callback_failure or failure

    def _recover(self, partitions: list[int], in_rebalance: bool) -> None:
        """(Re)build the processors of ``partitions`` from committed state and point the consumer there.

        Inside a rebalance callback the start offsets are set by ``assign``; outside one (after an
        aborted transaction) the consumer already owns the partitions and is rewound with ``seek``.
        """
        assert self._consumer is not None and self._reader is not None
        self._abort_left_open(partitions, with_offsets=not in_rebalance)
        wanted = [TopicPartition(self.topics[role], p) for p in partitions for role in self.topics]
        try:
            committed = self._consumer.committed(wanted, timeout=_KAFKA_TIMEOUT_S)
        except KafkaException as exception:
            if exception.args[0].code() == KafkaError._TIMED_OUT:
                raise ConsumerStalled(exception.args[0]) from None
            raise
        start_at: list[TopicPartition] = []
        for partition in partitions:
            offsets = {self.roles[tp.topic]: tp.offset for tp in committed if tp.partition == partition}
            start = recover_partition(
                partition=partition,
                topics=self.topics,
                committed=offsets,
                reader=self._reader,
                checkpoint_topic=self.settings.checkpoint_topic,
                audit_topic=self.settings.audit_topic,
                engine_config=self.engine_config,
                chain_key=self._chain_key,
            )
            self.processors[partition] = PartitionProcessor(
                partition=partition,
                engine=start.engine,
                chain=start.chain,
                instance_id=self.settings.instance_id,
                topic_names=self.topics,
                pseudonym_key=self._pseudonym_key,
                max_message_bytes=self.settings.max_message_bytes,
                replay_until=start.replay_until,
                positions=dict(start.start_offsets),
            )
            self._checkpointed.pop(partition, None)  # a checkpoint of an aborted transaction never happened
            self._labels_paused.discard(partition)
            if start.checkpoint_id is not None:
                self._checkpointed[partition] = dict(start.start_offsets)
            start_at.extend(
                TopicPartition(self.topics[role], partition, offset)
                for role, offset in start.start_offsets.items()
            )
            log.info(
                "partition_recovered",
                partition=partition,
                checkpoint_id=start.checkpoint_id,
                start_offsets=start.start_offsets,
                replay_until=start.replay_until,
                chain_seq=start.chain.next_seq,
                model_generation=start.engine.generation,
                transactions_scored=start.engine.stats["transactions_scored"],
                labels_learned=start.engine.model.labels_learned,
            )
        collect_everything()  # the restored state is frozen at once, not walked by later collections
        if in_rebalance:
            self._consumer.assign(start_at)  # assigning also clears any pause
        else:
            self._consumer.resume(start_at)
            for tp in start_at:
                self._consumer.seek(tp)

    def _abort_left_open(self, partitions: list[int], with_offsets: bool) -> None:
        """Abort one transaction that writes to every output partition of ``partitions`` (and,
        ``with_offsets``, to the group's offsets).

        A broker stopped while records were in flight was seen to keep some of them with no
        transaction left to end: an open transaction the coordinator did not know of, so the
        producer's fencing did not abort it. On an output partition its records held back the last
        stable offset, so readers stalled and recovery read an older chain head, and the next
        commit of this producer id committed them too, writing decisions twice; among the group's
        offsets, a pending offset commit made every ``committed()`` time out. An abort marker of
        the current producer ends whatever this producer id left open there, as aborted. What is
        written here is aborted too, so no reader of committed data sees it.

        The group's offsets are left out inside a rebalance callback, where the producer may be
        one that lived through an outage, whose ``send_offsets_to_transaction`` can wedge (see
        deadline.py). A pending offset commit then shows as a consumer whose committed offsets
        never come (:class:`ConsumerStalled`), and the resynchronisation that follows includes
        them, with a new producer.
        """
        assert self._producer is not None and self._consumer is not None
        if not partitions:
            return
        outputs = (*self.outputs.values(), self.settings.checkpoint_topic)
        self._producer.begin_transaction()
        for partition in partitions:
            for topic in outputs:
                self._producer.produce(topic, b"", key=b"abort", partition=partition)
        if self._producer.flush(_KAFKA_TIMEOUT_S):  # all appended, so the abort marks every partition
            reason = "closing transactions left open: the records were not all delivered"
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, reason, retriable=True))
        if with_offsets:
            offsets = [TopicPartition(self.topics[TRANSACTIONS], partition, 0) for partition in partitions]
            try:
                self._send_offsets(offsets, self._consumer.consumer_group_metadata())
            except KafkaException as exception:
                # The group may refuse them (say from a member whose session expired) once they are
                # in the transaction, whose abort then still marks the offsets. A call still running
                # or a fatal error leave the producer to the next attempt's replacement.
                error = exception.args[0]
                if error.code() == KafkaError._TIMED_OUT or not error.txn_requires_abort():
                    raise
        self._producer.abort_transaction(_KAFKA_TIMEOUT_S)

    # -- clients --------------------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        """A transactional producer; ``init_transactions`` fences any zombie with the same id."""
        producer = Producer(
            {
                **self.client,
                "transactional.id": f"{self.settings.group_id}-{self.settings.instance_id}",
                "enable.idempotence": True,
                # Records wait for the commit, whose flush sends them at once whatever the linger:
                # a batch goes out in a few large requests rather than one every 5 ms, less work for
                # the broker on the same cores, at no cost in latency (bench/latency_bench.py).
                "linger.ms": 100,
                "compression.type": "zstd",
                "message.max.bytes": 2 * 1024 * 1024,
                # A transaction stranded by a vanished broker is given up after this (the default 60 s
                # blocked the loop, and a stop request, for a minute after the broker was back).
                "transaction.timeout.ms": 15_000,
                # The coordinator answers CONCURRENT_TRANSACTIONS to the next transaction's first
                # request while it still writes the last one's commit markers (a few ms); the default
                # 100 ms back-off then added about 100 ms to every commit, and to every decision's
                # latency (bench/latency_bench.py).
                "retry.backoff.ms": 5,
                "error_cb": self._on_client_error,
            }
        )
        producer.init_transactions(_KAFKA_TIMEOUT_S)
        return producer

    def _new_consumer(self) -> Consumer:
        consumer = Consumer(self._consumer_config())
        consumer.subscribe(
            list(self.roles), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        return consumer

    def _replace_consumer(self) -> None:
        """Leave the group with the stalled consumer and join it with a new one, as at a start.

        Seen after a broker restart that outlasted the group session: ``committed()`` of the old
        consumer timed out again and again while the brokers answered its producer, for minutes.
        """
        stalled, self._consumer = self._consumer, None
        self._assigned = False
        self._labels_paused.clear()
        if stalled is not None:
            try:
                call_within(stalled.close, _KAFKA_TIMEOUT_S, "closing the stalled consumer")
            except KafkaException as error:  # its thread lets go of it when librdkafka does
                log.warning("consumer_close_abandoned", error=str(error))
        self._consumer = self._new_consumer()

    def _consumer_config(self) -> dict[str, Any]:
        return {
            **self.client,
            "group.id": self.settings.group_id,
            "partition.assignment.strategy": "range",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "error_cb": self._on_client_error,
        }


class ConsumerStalled(KafkaException):
    """The group's committed offsets did not come within the timeout, though Kafka answers."""


def _retrying(action: Any, attempts: int = 3) -> None:
    """Run a transactional call, retrying the errors Kafka marks retriable."""
    for attempt in range(attempts):
        try:
            action()
            return
        except KafkaException as exception:
            if not exception.args[0].retriable() or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
