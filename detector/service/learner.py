"""``fraud-detector learn``: the one learner of a topology whose partitions share one model.

An exactly-once loop like the scorers': it reads every partition of the shared-updates topic
(read_committed, assigned by hand: one learner owns them all), and for each batch begins a Kafka
transaction, hands the updates to the :class:`SharedLearner`, produces one version record per epoch
it could apply, writes a due checkpoint of its state (to the checkpoint topic) and of its view
(to the shared-snapshots topic), and commits with the update offsets. Its transactional id is
fixed (``<group>-learner``), so a second learner fences the first, which then exits.

The first learns of it from the coordinator, at its next transaction: one begins at least every
:data:`FENCE_CHECK_S`, with the update offsets alone if there is nothing else to commit, so that an
idle learner too exits within that time. A fencing can also show only as the bare ``_FATAL`` of a
``produce()``, which is resolved to its cause (:func:`~detector.service.fencing.fatal_cause`): taken
for a passing failure, it made the fenced learner recover, and its new producer fenced the newer
learner instead.

A restart restores the latest checkpoint and reads the updates again from its offsets: the versions
it produces again are the same as before (the learner is deterministic), and scorers skip versions
they already hold. Committed offsets are never moved back below what was committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from detector.engine.config import EngineConfig
from detector.engine.learner import SharedLearner
from detector.engine.wire import decode_updates, encode_version
from detector.service.client_logs import kafka_errors_unmasked
from detector.service.clients import COMMIT_TIMEOUT_S, KAFKA_TIMEOUT_S, Clients, transactional_producer
from detector.service.fencing import fatal_cause, producer_fenced, timed_out
from detector.service.health import Readiness, serving
from detector.service.learner_metrics import LearnerMetrics
from detector.service.reading import reader_config, watermarks
from detector.service.settings import ConfigurationError, ServiceSettings
from detector.service.shared_state import LEARNER, LearnerCheckpoints
from detector.service.state_files import fresh_stores, state_files_for
from detector.service.topic_map import SHARED_UPDATES, SHARED_VERSIONS, TopicMap
from detector.service.topics import ensure_shared_topics, ensure_topics
from detector.state.database import StateDatabase

log = structlog.get_logger("detector.learner")
FENCE_CHECK_S = 5.0  # the longest time without a transaction, which is how a learner learns it was fenced


class LearnerFenced(RuntimeError):
    """Another learner with the same transactional id has started: this one must stop."""


class LearnerService:
    """The learner process: consume updates, apply epochs, publish versions, checkpoint, commit."""

    def __init__(
        self,
        settings: ServiceSettings,
        engine_config: EngineConfig,
        environ: Mapping[str, str],
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.engine_config = engine_config
        self.stopping = stopping or threading.Event()
        self.topics = TopicMap.of(settings)
        self.readiness = Readiness()
        self.metrics = LearnerMetrics()
        self.clients = Clients(settings, environ, self.topics, self.readiness)  # config and admin
        self.learner: SharedLearner | None = None
        self.consumer: Consumer | None = None
        self.checkpoints: LearnerCheckpoints | None = None
        self.positions: dict[int, int] = {}  # updates partition -> next offset to read
        self.committed_floor: dict[int, int] = {}  # never commit below what was committed before
        self._producer: Producer | None = None
        self._last_checkpoint = time.monotonic()
        self._began = time.monotonic()  # when the open (or the last) transaction began
        self.state_files = state_files_for(settings)
        self.state: StateDatabase | None = None  # the pending scores on disk (FRAUD_STATE_STORE=disk)

    @property
    def transactional_id(self) -> str:
        return f"{self.settings.group_id}-learner"

    def run(self) -> int:
        """Run until stopped (0) or fenced by another learner (1)."""
        with serving(
            self.settings.metrics_port,
            self.metrics.registry,
            lambda: self.readiness.heartbeat,
            lambda: self.readiness.ready,
        ):
            admin = self.clients.connected_admin()
            partitions = ensure_topics(admin, self.settings)
            if not self.settings.shares_through_learner(partitions):
                raise ConfigurationError(
                    f"FRAUD_SHARING={self.settings.sharing} with {partitions} input partition(s):"
                    " the scorers keep their own model, there is nothing for a learner to do"
                )
            ensure_shared_topics(admin, self.settings, partitions)
            reader = Consumer(reader_config(self.clients.config, self.transactional_id + "-reader"))
            self.consumer = Consumer(
                {**reader_config(self.clients.config, self.transactional_id), "enable.partition.eof": False}
            )
            self.checkpoints = LearnerCheckpoints(self.settings, reader)
            try:
                self._recover(partitions)
                while not self.stopping.is_set():
                    try:
                        with kafka_errors_unmasked():
                            self._run_batch()
                    except KafkaException as exception:
                        error = exception.args[0]
                        if self._producer is not None:
                            error = fatal_cause(self._producer, error)
                        if not self._timed_out(error):
                            if producer_fenced(error):
                                raise LearnerFenced(str(error)) from None
                            log.warning("kafka_failure", error=str(error))
                        self.metrics.aborted()
                        self._recover(partitions)
                if self.learner is not None and self._producer is not None:
                    self._run_batch(final=True)  # the last checkpoint, at the committed positions
            except LearnerFenced as fenced:
                log.error("learner_fenced", error=str(fenced))
                return 1
            finally:
                self._close_state()
                self.consumer.close()
                reader.close()
            log.info("stopped", version=self.learner.version if self.learner else None)
            return 0

    # -- recovery -------------------------------------------------------------------------------

    def _recover(self, partitions: int) -> None:
        """A new producer (which aborts what the last one left open and fences any other learner),
        the latest checkpoint, and the updates from its offsets on."""
        assert self.consumer is not None and self.checkpoints is not None
        self._producer = None
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self._producer = transactional_producer(
                    self.clients.config,
                    self.transactional_id,
                    self.settings.transaction_timeout_ms,
                    self.clients._on_client_error,
                )
                break
            except KafkaException as exception:
                if producer_fenced(exception.args[0]):
                    raise LearnerFenced(str(exception)) from None
                log.warning("kafka_unavailable", error=str(exception), retry_in_s=delay)
                self.stopping.wait(delay)
                delay = min(2 * delay, 10.0)
        if self._producer is None:
            return
        topic = self.topics.name(SHARED_UPDATES)
        self._close_state()
        self.state = self.state_files.open(LEARNER) if self.state_files is not None else None
        restored = self.checkpoints.load_learner(self.engine_config, self.state)
        if restored is not None:
            self.learner = restored.learner
        else:
            self.learner = SharedLearner(self.engine_config, partitions, fresh_stores(self.state))
        committed = self.consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=KAFKA_TIMEOUT_S
        )
        self.committed_floor = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        self.positions = {}
        for partition in range(partitions):
            low, _ = watermarks(self.consumer, topic, partition)
            start = restored.offsets.get(partition, low) if restored else low
            self.positions[partition] = max(start, low)
        self.consumer.assign([TopicPartition(topic, p, offset) for p, offset in self.positions.items()])
        self._last_checkpoint = time.monotonic()
        self.readiness.assigned = True
        log.info(
            "learner_recovered",
            checkpoint_id=restored.checkpoint_id if restored else None,
            version=self.learner.version,
            start_offsets={str(p): offset for p, offset in self.positions.items()},
            committed={str(p): offset for p, offset in self.committed_floor.items()},
            model_generation=self.learner.generation,
            labels_learned=self.learner.model.labels_learned,
        )

    def _close_state(self) -> None:
        if self.state is not None and self.state_files is not None:
            self.state_files.close(self.state)
        self.state = None

    # -- the transactional loop -----------------------------------------------------------------

    def _timed_out(self, error: KafkaError) -> bool:
        return timed_out(error, time.monotonic() - self._began, self.settings.transaction_timeout_ms)

    def _run_batch(self, final: bool = False) -> None:
        assert self.consumer is not None and self.learner is not None and self.checkpoints is not None
        producer = self._producer
        assert producer is not None
        messages = [] if final else self._consume(self.consumer)
        self.readiness.consumed()
        now = time.monotonic()
        checkpoint_due = final or now - self._last_checkpoint >= self.settings.checkpoint_interval_s
        # Nothing to commit for a while: a transaction of the offsets alone asks the coordinator
        # whether another learner has taken over, which nothing else would while no update comes.
        fence_check_due = now - self._began >= FENCE_CHECK_S
        if not messages and not checkpoint_due and not fence_check_due:
            return
        producer.begin_transaction()
        self._began = time.monotonic()
        self.metrics.began()
        for message in messages:
            self._receive(self.learner, message)
        version = self.learner.apply_ready()
        if version is not None:
            self.checkpoints.produce_version(
                producer, self.topics.name(SHARED_VERSIONS), version.epoch, encode_version(version)
            )
            self.metrics.applied(1)
        if checkpoint_due:
            self.checkpoints.write(producer, self.learner, self.positions, self.state)
            self._last_checkpoint = time.monotonic()
        offsets = [
            TopicPartition(self.topics.name(SHARED_UPDATES), p, max(offset, self.committed_floor.get(p, -1)))
            for p, offset in self.positions.items()
        ]
        producer.send_offsets_to_transaction(
            offsets, self.consumer.consumer_group_metadata(), COMMIT_TIMEOUT_S
        )
        producer.commit_transaction(COMMIT_TIMEOUT_S)
        self.readiness.committed()
        self.checkpoints.delivered()
        self.metrics.committed(
            self.learner.version,
            self.learner.generation,
            self.learner.model.labels_learned,
            checkpoint_due,
            self.learner.stats,
        )
        if version is not None:
            log.debug("version_published", epoch=version.epoch, generation=version.generation)

    def _consume(self, consumer: Consumer) -> list[Message]:
        """What is there, or the first record to come within 0.1 s and what came with it: a scorer
        waits for the version the next update completes, so none is held back for a fuller batch."""
        messages = consumer.consume(self.settings.batch_size, 0)
        if not messages:
            first = consumer.poll(0.1)
            messages = [first, *consumer.consume(self.settings.batch_size - 1, 0)] if first else []
        return messages

    def _receive(self, learner: SharedLearner, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.warning("consume_error", error=str(error))
            return
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None, "a record consumed without error has both"
        self.positions[partition] = offset + 1
        value = message.value()
        if value:  # an empty record is what a scorer's recovery writes to close what it left open
            learner.submit(decode_updates(value))
        self.metrics.consumed(partition)
