"""The scorer side of shared learning: one view per instance, the epoch barrier, updates and idle marks.

When the partitions share one model (``FRAUD_SHARING``), every partition's engine is a scorer that
reads the instance's :class:`~detector.engine.view.SharedView`, built at start from the latest
snapshot and the versions after it (:func:`~detector.service.shared_state.load_view`). Per batch:

* before the commit, each partition's updates and close marks go to its partition of the
  shared-updates topic, in the same transaction as its outputs and input offsets;
* a partition whose next transaction needs a version the view lacks waits at that record
  (``waiting_for``), which and the partition's transactions read after it are kept in its backlog;
  once the transaction holding its close marks has committed, the versions topic is read and the
  backlogs of the partitions whose version has come are processed first in the next batch;
* a partition read to its end and silent for ``FRAUD_SHARING_IDLE_S`` sends an idle mark, so the
  learner does not wait for it (decisions are deterministic only while no partition idles).
"""

from __future__ import annotations

import time

import structlog
from confluent_kafka import Consumer, Message, TopicPartition

from detector.engine.config import EngineConfig
from detector.engine.shared import NO_VERSION, EpochClosed
from detector.engine.wire import encode_updates
from detector.service.partition import OutRecord
from detector.service.partitions import OwnedPartition, Partitions
from detector.service.settings import ServiceSettings
from detector.service.shared_state import ViewHistory, load_view
from detector.service.topic_map import SHARED_UPDATES, TRANSACTIONS, TopicMap
from detector.service.transaction import Transactions

log = structlog.get_logger("detector.service")
# How long a loop whose partitions all wait blocks on the versions topic before reading inputs again.
VERSION_WAIT_S = 0.1


class SharedScoring:
    """The shared view of this instance and the barrier of its partitions."""

    def __init__(self, settings: ServiceSettings, topics: TopicMap, reader: Consumer) -> None:
        self.settings = settings
        self.topics = topics
        self.reader = reader  # for the versions topic; no group membership
        self.history: ViewHistory | None = None
        self.idle_marks = 0
        self._quiet_since: dict[int, tuple[int, float]] = {}  # partition -> (position, since when)
        self._idle: set[int] = set()

    def load(self, engine_config: EngineConfig) -> ViewHistory:
        self.history = load_view(self.settings, self.reader, engine_config)
        return self.history

    # -- inside the batch's transaction ---------------------------------------------------------

    def before_commit(self, consumer: Consumer, owned: Partitions, transactions: Transactions) -> None:
        """Idle marks where due, then every partition's updates into the open transaction."""
        self._mark_idle(consumer, owned)
        for partition in owned:
            processor = owned[partition].processor
            if processor.updates:
                transactions.produce(
                    OutRecord(SHARED_UPDATES, None, encode_updates(processor.updates)), partition
                )
                processor.updates = []

    def has_updates(self, owned: Partitions) -> bool:
        """Whether some partition has updates to commit, or is due an idle mark (a batch is needed)."""
        now = time.monotonic()
        due = any(
            partition not in self._idle and now - since >= self.settings.sharing_idle_s
            for partition, (_, since) in self._quiet_since.items()
            if partition in owned
        )
        return due or any(owned[partition].processor.updates for partition in owned)

    # -- the barrier ----------------------------------------------------------------------------

    def keep(self, consumer: Consumer, owned: OwnedPartition, message: Message) -> None:
        """Keep a transaction of a waiting partition for when its version comes.

        The partition is not paused and sought back: librdkafka drops what it prefetched of a
        paused partition and fetches it again on resume, for every partition at every epoch. Only
        a backlog of ``batch_size`` records pauses it (fetching resumes after the backlog).
        """
        owned.backlog.append(message)
        if len(owned.backlog) >= self.settings.batch_size and not owned.transactions_paused:
            partition = owned.processor.partition  # the message's
            consumer.pause([TopicPartition(self.topics.name(TRANSACTIONS), partition)])
            owned.transactions_paused = True
            log.debug("partition_held", partition=partition, backlog=len(owned.backlog))

    def wait_if_all_held(self, consumer: Consumer, owned: Partitions) -> None:
        """While every partition waits for a version, wait on the versions topic (up to
        :data:`VERSION_WAIT_S`) rather than read inputs that would only join the backlogs."""
        if self.history is None or not owned or any(owned[p].processor.waiting_for is None for p in owned):
            return
        self.history.wait(self.reader, VERSION_WAIT_S)
        self._release(consumer, owned)

    def after_commit(self, consumer: Consumer, owned: Partitions) -> None:
        """Read new versions if a partition waits, and release those whose version has come."""
        if self.history is None or all(owned[p].processor.waiting_for is None for p in owned):
            return
        self.history.poll(self.reader)
        self._release(consumer, owned)

    def _release(self, consumer: Consumer, owned: Partitions) -> None:
        version = self.history.view.version if self.history is not None else NO_VERSION
        waiting = {p: owned[p].processor.waiting_for for p in owned}
        ready = [p for p, needed in waiting.items() if needed is not None and needed <= version]
        paused = []
        for partition in ready:
            state = owned[partition]
            state.processor.waiting_for = None
            if state.transactions_paused:
                state.transactions_paused = False
                paused.append(TopicPartition(self.topics.name(TRANSACTIONS), partition))
        if paused:
            consumer.resume(paused)
        if ready:
            log.debug("partitions_resumed", partitions=ready, version=version)

    @staticmethod
    def backlogs(owned: Partitions) -> list[Message]:
        """The kept transactions of the partitions no longer waiting, to process before new input
        (taken after ``consume()``, whose rebalance may have replaced a partition and its backlog)."""
        messages: list[Message] = []
        for partition in owned:
            state = owned[partition]
            if state.backlog and state.processor.waiting_for is None:
                messages.extend(state.backlog)
                state.backlog = []
        return messages

    # -- idle partitions ------------------------------------------------------------------------

    def _mark_idle(self, consumer: Consumer, owned: Partitions) -> None:
        now = time.monotonic()
        for partition in owned:
            processor = owned[partition].processor
            position = processor.positions.get(TRANSACTIONS, -1)
            previous = self._quiet_since.get(partition)
            if previous is None or previous[0] != position or processor.waiting_for is not None:
                self._quiet_since[partition] = (position, now)
                if previous is not None and previous[0] != position:
                    self._idle.discard(partition)
                continue
            if partition in self._idle or now - previous[1] < self.settings.sharing_idle_s:
                continue
            tp = TopicPartition(self.topics.name(TRANSACTIONS), partition)
            _, high = consumer.get_watermark_offsets(tp, timeout=5.0)
            if high > position:  # quiet but not at its end: not idle
                self._quiet_since[partition] = (position, now)
                continue
            closed = processor.scorer.closed
            processor.updates.append(EpochClosed(partition, closed, idle=True))
            self._idle.add(partition)
            self.idle_marks += 1
            log.info("partition_idle", partition=partition, closed=closed, marks=self.idle_marks)
