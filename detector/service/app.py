"""The detector service: consume, score, and commit outputs with input offsets in one Kafka transaction.

The loop follows confluent-kafka's exactly-once pattern (:mod:`detector.service.transaction`):
for each batch, begin a transaction, produce every output and due checkpoint, and commit it with
the next input offsets to read. On a Kafka failure every assigned partition is recovered from its
committed state with a new producer (:mod:`detector.service.rebalance`). The pieces:

* :mod:`~detector.service.connecting` connects to Kafka while the engine's modules load;
* :mod:`~detector.service.clients` builds the Kafka clients and holds the fencing workarounds;
* :mod:`~detector.service.partitions` holds each owned partition's state;
* :mod:`~detector.service.rebalance` recovers, checkpoints and forgets partitions as they move;
* :mod:`~detector.service.health` serves liveness and readiness, :mod:`~detector.service.metrics`
  what committed.

Why recovery does what it does: docs/service-recovery.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import structlog
from confluent_kafka import Consumer, KafkaException, Message

from detector.engine.config import EngineConfig
from detector.service.client_logs import kafka_errors_unmasked
from detector.service.clients import ConsumerStalled
from detector.service.collector import collect_after_batch
from detector.service.connecting import Connection
from detector.service.fencing import FenceTolerance, InstanceFenced, consumer_fenced
from detector.service.health import serving
from detector.service.metrics import ServiceMetrics
from detector.service.partitions import OwnedPartition, Partitions
from detector.service.reading import reader_config
from detector.service.rebalance import Rebalancing
from detector.service.settings import ServiceSettings
from detector.service.sharing import SharedScoring
from detector.service.state_files import state_files_for
from detector.service.topic_map import LABELS, TRANSACTIONS
from detector.service.topics import ensure_shared_topics
from detector.service.transaction import Transactions

log = structlog.get_logger("detector.service")
CHANGES_CHECKED_EVERY = 100  # input records between checks of FRAUD_CHECKPOINT_MAX_CHANGES in a batch


class DetectorService:
    """One detector instance: a consumer in the group, a transactional producer, per-partition state."""

    def __init__(
        self,
        settings: ServiceSettings,
        engine_config: EngineConfig,
        environ: Mapping[str, str],
        stopping: threading.Event | None = None,
        connection: Connection | None = None,
    ) -> None:
        """``connection``: one started while the engine's modules loaded (connecting.py), else
        the service connects when it runs."""
        self.settings = settings
        self.engine_config = engine_config
        self.stopping = stopping or threading.Event()
        self.connection = connection or Connection(settings, environ)
        self.topics, self.readiness = self.connection.topics, self.connection.readiness
        self.metrics = ServiceMetrics()
        self.partitions = Partitions(state_files_for(settings), settings.checkpoint_max_changes)
        self.fence_tolerance = FenceTolerance()
        self.clients = self.connection.clients
        self.transactions = Transactions(
            self.clients, self.topics, self.metrics, self.readiness, settings.checkpoint_interval_s
        )
        self.sharing: SharedScoring | None = None  # when the partitions share one model, from run()

    def _wire(self, input_partitions: int) -> None:
        """The view shared by this instance's partitions, if they share one model, and the rebalancing."""
        history = None
        if self.settings.shares_through_learner(input_partitions):
            ensure_shared_topics(self.clients.connected_admin(), self.settings, input_partitions)
            self.topics.shared = True
            reader = Consumer(reader_config(self.clients.config, f"{self.settings.group_id}-versions"))
            self.sharing = SharedScoring(self.settings, self.topics, reader)
            history = self.sharing.load(self.engine_config)
        log.info("sharing", mode="learner" if history is not None else "local")
        self.rebalancing = Rebalancing(
            settings=self.settings,
            engine_config=self.engine_config,
            topics=self.topics,
            clients=self.clients,
            partitions=self.partitions,
            transactions=self.transactions,
            metrics=self.metrics,
            readiness=self.readiness,
            stopping=self.stopping,
            shared=history,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM / SIGINT), then checkpoint and leave the group.

        Metrics and health are served from before it waits on Kafka to after its last call.
        """
        readiness = self.readiness
        with serving(
            self.settings.metrics_port,
            self.metrics.registry,
            lambda: readiness.heartbeat,
            lambda: readiness.ready,
        ):
            try:
                partitions = self.connection.established()
                log.info("topics_ready", input_partitions=partitions)
                self._wire(partitions)
                self.connection.listener = self.rebalancing
                failure: KafkaException | InstanceFenced | None = None
                while not self.stopping.is_set():
                    try:
                        with kafka_errors_unmasked():
                            if isinstance(failure, InstanceFenced):
                                self._rejoin(failure)
                            elif failure is not None:
                                self._resynchronise(failure)
                            else:
                                self._run_batch()
                        failure = None
                    except KafkaException as exception:  # fatal ones too: a new producer is the remedy
                        failure = exception
                    except InstanceFenced as fenced:
                        if not self.fence_tolerance.tolerated():
                            raise
                        failure = fenced
            except InstanceFenced:
                self.partitions.clear()  # another process owns them now: no final checkpoint
                raise
            finally:
                self._shutdown()

    @property
    def ready(self) -> bool:
        """What ``/readyz`` reports (:class:`~detector.service.health.Readiness`)."""
        return self.readiness.ready

    @property
    def transactions_committed(self) -> int:
        return self.transactions.committed

    def stop(self) -> None:
        self.stopping.set()

    def _shutdown(self) -> None:
        self.readiness.assigned = False
        try:
            if self.partitions:
                self.transactions.checkpoint_in_own_transaction(self.partitions, list(self.partitions))
        except KafkaException as error:  # e.g. stopping while the broker is away: the last checkpoint stands
            log.warning("final_checkpoint_skipped", error=str(error))
        finally:
            self.partitions.clear()  # closes their state databases
            self.clients.close()
            if self.sharing is not None:
                self.sharing.reader.close()
            log.info("stopped", transactions_committed=self.transactions_committed)

    # -- the transactional loop -----------------------------------------------------------------

    def _run_batch(self) -> None:
        consumer = self.clients.consumer
        assert consumer is not None
        sharing = self.sharing
        if sharing is not None:
            sharing.wait_if_all_held(consumer, self.partitions)
        messages = consumer.consume(self.settings.batch_size, self.settings.batch_timeout_ms / 1000.0)
        self.readiness.consumed()
        self.clients.raise_if_fenced()
        self.rebalancing.raise_kept_failure()
        if sharing is not None:  # what waited for its version comes before anything read after it
            messages = sharing.backlogs(self.partitions) + messages
        self.metrics.update_lag(consumer, self.partitions.processors(), self.topics)
        periodic = self.transactions.checkpoint_due()
        soon = {*self.partitions.first_checkpoints_due(), *self.partitions.changes_due()}
        checkpoints = list(self.partitions) if periodic else sorted(soon)
        shared_due = sharing is not None and sharing.has_updates(self.partitions)
        if messages or checkpoints or shared_due:
            self.transactions.begin()
            for count, message in enumerate(messages, 1):
                self._handle(message)
                if count % CHANGES_CHECKED_EVERY == 0:
                    self._checkpoint_busy_partitions()
            self.partitions.hold_labels_ahead_of_transactions(
                consumer, self.topics.name(LABELS), self.engine_config.max_queued_labels
            )
            if sharing is not None:
                sharing.before_commit(consumer, self.partitions, self.transactions)
            if checkpoints:
                self.transactions.write_checkpoints(self.partitions, checkpoints, periodic)
            self.transactions.commit(self.partitions)
            collect_after_batch()
        if sharing is not None:
            sharing.after_commit(consumer, self.partitions)

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if consumer_fenced(error):  # the consumer's only fatal error
                raise InstanceFenced(error)
            log.warning("consume_error", error=str(error))
            return
        partition, offset, topic = message.partition(), message.offset(), message.topic()
        assert partition is not None and offset is not None and topic is not None, "no error: all three"
        owned = self.partitions.get(partition)
        if owned is None:  # a straggler from a partition revoked in this very poll
            return
        processor = owned.processor
        role = self.topics.role(topic)
        if role == TRANSACTIONS and processor.waiting_for is not None:  # behind a waiting record
            self._keep(owned, message)
            return
        outputs = processor.process(role, offset, message.key(), message.value())
        if role == TRANSACTIONS and processor.waiting_for is not None:  # it waits from this record
            self._keep(owned, message)
            return
        for out in outputs:
            self.transactions.produce(out, partition)
        self.metrics.consumed_record(role, message, emitted=bool(outputs))

    def _checkpoint_busy_partitions(self) -> None:
        """Checkpoint, within the batch, the partitions whose state changed enough: a checkpoint's
        pause grows with its changes, and a whole batch can change thousands of entries. Its input
        positions are behind the offsets this transaction commits, which recovery replays up to
        without output (``replay_until``)."""
        busy = self.partitions.changes_due()
        if busy:
            self.transactions.write_checkpoints(self.partitions, busy)

    def _keep(self, owned: OwnedPartition, message: Message) -> None:
        assert self.sharing is not None and self.clients.consumer is not None
        self.sharing.keep(self.clients.consumer, owned, message)

    def _rejoin(self, fenced: InstanceFenced) -> None:
        """Join the group again with a new consumer, once: a lone consumer can be fenced by its own
        join, retried across a broker restart (docs/service-recovery.md)."""
        log.warning("consumer_fenced_rejoining", error=str(fenced))
        self.readiness.assigned = False
        self.partitions.clear()  # the new consumer's assignment recovers them from committed state
        self.clients.fenced = None
        self.clients.replace_consumer()
        self._resynchronise(KafkaException(fenced.error))

    def _resynchronise(self, cause: KafkaException) -> None:
        """After a Kafka failure (e.g. the broker went away): start again from what was committed,
        with a new producer, retrying with a growing pause until the broker answers.

        The instance is not ready meanwhile. A consumer whose committed offsets never come is
        replaced (why: docs/service-recovery.md).
        """
        log.warning("kafka_failure", error=str(cause))
        self.readiness.brokers_down = True
        self.rebalancing.failure = None  # recovered from below, whichever failure came first
        assert self.clients.consumer is not None
        # What the consumer owns, not what has state here: an assignment whose recovery failed has
        # none. The state goes at once: it is ahead of what was committed, and a stop before
        # recovery completes must not checkpoint it with its positions.
        partitions = sorted({tp.partition for tp in self.clients.consumer.assignment()})
        self.partitions.clear()
        self.clients.release_producer()  # before a new one is made, which fences it
        delay = 0.5
        while not self.stopping.is_set():
            self.clients.raise_if_fenced()
            self.readiness.heartbeat = time.monotonic()  # waiting for Kafka is alive, not stuck
            try:
                self.clients.renew_producer()
                self.rebalancing.recover(partitions, in_rebalance=False)
                # Also when assigning had failed:
                self.readiness.assigned = self.readiness.assigned or bool(partitions)
                self.readiness.brokers_down = False
                log.info("kafka_resynchronised", partitions=sorted(self.partitions))
                return
            except ConsumerStalled as exception:
                log.warning("consumer_stalled", error=str(exception))
                self.readiness.assigned = False
                self.clients.replace_consumer()
                self.readiness.brokers_down = False  # the producer has just been initialised
                return  # the partitions come back through the new consumer's assignment
            except KafkaException as exception:
                log.warning("kafka_unavailable", error=str(exception), retry_in_s=delay)
                self.stopping.wait(delay)
                delay = min(2 * delay, 10.0)
