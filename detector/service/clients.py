"""The service's Kafka clients: a transactional producer, the group's consumer, and readers for recovery.

Besides building them with their settings, this is where the fencing workarounds live: the old
producer is released before a new one fences it, what this producer id left open is aborted before
recovery reads the outputs, and a consumer whose committed offsets never come is replaced. The
consumer is a static member (``group.instance.id``), and its membership taken over by another
process is kept for the loop to stop on (:mod:`~detector.service.fencing`). Why each of them is
needed is told in docs/service-recovery.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from detector.kafka_config import client_config, client_settings, refuse_owned
from detector.service.client_logs import CLIENT_LOGGER
from detector.service.deadline import call_within
from detector.service.fencing import InstanceFenced, consumer_fenced
from detector.service.health import Readiness
from detector.service.reading import reader_config
from detector.service.settings import ConfigurationError, ServiceSettings
from detector.service.topic_map import TRANSACTIONS, TopicMap

log = structlog.get_logger("detector.service")
KAFKA_TIMEOUT_S = 30.0
COMMIT_TIMEOUT_S = 10.0  # bounds how long a stop request waits behind a commit to a vanished broker
_ABANDON_AFTER_S = 5.0  # past a call's own timeout: it is wedged in librdkafka (see deadline.py)


class RebalanceListener(Protocol):
    def on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None: ...
    def on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None: ...
    def on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None: ...


class ConsumerStalled(KafkaException):
    """The group's committed offsets did not come within the timeout, though Kafka answers."""


def transactional_producer(
    config: dict[str, Any], transactional_id: str, timeout_ms: int, on_error: Callable[[KafkaError], None]
) -> Producer:
    """A transactional producer with the service's defaults, initialised: any zombie with the same
    ``transactional_id`` is fenced."""
    producer = Producer(
        {
            # Defaults an operator may override with KAFKA_* settings:
            # Records wait for the commit, whose flush sends them at once whatever the linger:
            # a batch goes out in a few large requests rather than one every 5 ms, less work for
            # the broker on the same cores, at no cost in latency (bench/latency_bench.py).
            "linger.ms": 100,
            "compression.type": "zstd",
            "message.max.bytes": 2 * 1024 * 1024,
            # The coordinator answers CONCURRENT_TRANSACTIONS to the next transaction's first
            # request while it still writes the last one's commit markers (a few ms); the default
            # 100 ms back-off then added about 100 ms to every commit, and to every decision's
            # latency (bench/latency_bench.py).
            "retry.backoff.ms": 5,
            **config,
            # Owned by the service (kafka_config.SERVICE_OWNED refuses them at start):
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            # A transaction stranded by a vanished broker is given up after this (the default 60 s
            # blocked the loop, and a stop request, for a minute after the broker was back).
            "transaction.timeout.ms": timeout_ms,
            "error_cb": on_error,
        }
    )
    producer.init_transactions(KAFKA_TIMEOUT_S)
    return producer


class Clients:
    """The Kafka clients of one instance, replaced as recovery requires."""

    def __init__(
        self, settings: ServiceSettings, environ: Mapping[str, str], topics: TopicMap, readiness: Readiness
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.readiness = readiness
        refuse_owned(client_settings(environ))  # they would be silently replaced below
        # librdkafka's log lines become JSON events instead of raw lines on stderr (client_logs.py).
        self.config: dict[str, Any] = {
            **client_config(settings.bootstrap_servers, environ=environ),
            "logger": CLIENT_LOGGER,
        }
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self.readers: list[Consumer] = []  # one per partition recovered at the same time
        self.fenced: KafkaError | None = None  # another process took this instance's group membership
        self._listener: RebalanceListener | None = None

    def connected_admin(self) -> AdminClient:
        """An admin client once a broker answers; refused credentials or TLS end the start at once.

        Without this check a wrong password surfaces only after a 30 s metadata timeout, as a
        transport failure that does not say why.
        """
        refused: list[KafkaError] = []

        def on_error(error: KafkaError) -> None:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
                refused.append(error)

        # confluent-kafka's stub types the config's values as str | int | float | bool: no callbacks
        admin = AdminClient({**self.config, "error_cb": on_error})  # type: ignore[dict-item]
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
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

    def open(self, listener: RebalanceListener) -> None:
        """The producer and a consumer subscribed to the inputs with ``listener``."""
        self._listener = listener
        self.renew_producer()
        self.consumer = self._new_consumer()

    def readers_for(self, count: int) -> list[Consumer]:
        """``count`` readers for recovery, made once and kept: one per partition read in parallel."""
        while len(self.readers) < count:
            self.readers.append(Consumer(reader_config(self.config, f"{self.settings.group_id}-reader")))
        return self.readers[:count]

    def close(self) -> None:
        """Close every client; one that fails (say a fenced producer's flush) is logged, not raised,
        so that a stop ends the same way wherever it comes."""
        clients = [self.consumer, *self.readers, self.producer]
        for client in clients:
            if client is None:
                continue
            try:
                if isinstance(client, Producer):
                    client.flush(COMMIT_TIMEOUT_S)
                else:
                    client.close()
            except KafkaException as exception:
                log.warning("client_close_failed", client=type(client).__name__, error=str(exception))
        self.consumer, self.readers, self.producer = None, [], None  # their connections close now

    def raise_if_fenced(self) -> None:
        """:class:`InstanceFenced` once another process has joined the group as this instance."""
        if self.fenced is not None:
            raise InstanceFenced(self.fenced)

    # -- the producer ---------------------------------------------------------------------------

    def release_producer(self) -> None:
        """Drop the producer before a new one fences it, so none of its queued records is sent."""
        self.producer = None

    def renew_producer(self) -> None:
        """A transactional producer; ``init_transactions`` fences any zombie with the same id."""
        self.producer = transactional_producer(
            self.config,
            f"{self.settings.group_id}-{self.settings.instance_id}",
            self.settings.transaction_timeout_ms,
            self._on_client_error,
        )

    def send_offsets(self, offsets: list[TopicPartition], group: Any) -> None:
        """``send_offsets_to_transaction``, abandoned if it outlives its own timeout (deadline.py)."""
        assert self.producer is not None
        producer = self.producer
        call_within(
            lambda: producer.send_offsets_to_transaction(offsets, group, COMMIT_TIMEOUT_S),
            COMMIT_TIMEOUT_S + _ABANDON_AFTER_S,
            "send_offsets_to_transaction",
        )

    def abort_left_open(self, partitions: list[int], with_offsets: bool) -> None:
        """Abort one transaction over every output partition of ``partitions`` (and, ``with_offsets``,
        the group's offsets), which ends whatever this producer id left open there.

        A broker stopped mid-transaction can keep records that no fencing aborts (see
        docs/service-recovery.md). The offsets are left out inside a rebalance callback, where
        ``send_offsets_to_transaction`` can wedge; a stalled consumer then brings them in.
        """
        assert self.producer is not None and self.consumer is not None
        if not partitions:
            return
        self.producer.begin_transaction()
        for partition in partitions:
            for topic in self.topics.written():
                self.producer.produce(topic, b"", key=b"abort", partition=partition)
        if self.producer.flush(KAFKA_TIMEOUT_S):  # all appended, so the abort marks every partition
            reason = "closing transactions left open: the records were not all delivered"
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, reason, retriable=True))
        if with_offsets:
            offsets = [
                TopicPartition(self.topics.name(TRANSACTIONS), partition, 0) for partition in partitions
            ]
            try:
                self.send_offsets(offsets, self.consumer.consumer_group_metadata())
            except KafkaException as exception:
                # The group may refuse them (say from a member whose session expired) once they are
                # in the transaction, whose abort then still marks the offsets. A call still running
                # or a fatal error leave the producer to the next attempt's replacement.
                error = exception.args[0]
                if error.code() == KafkaError._TIMED_OUT or not error.txn_requires_abort():
                    raise
        self.producer.abort_transaction(KAFKA_TIMEOUT_S)

    # -- the consumer ---------------------------------------------------------------------------

    def committed(self, wanted: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offsets; :class:`ConsumerStalled` if they do not come in time."""
        assert self.consumer is not None
        try:
            return self.consumer.committed(wanted, timeout=KAFKA_TIMEOUT_S)
        except KafkaException as exception:
            if consumer_fenced(exception.args[0]):
                raise InstanceFenced(exception.args[0]) from None
            if exception.args[0].code() == KafkaError._TIMED_OUT:
                raise ConsumerStalled(exception.args[0]) from None
            raise

    def replace_consumer(self) -> None:
        """Leave the group with the stalled consumer and join it with a new one, as at a start
        (why: docs/service-recovery.md)."""
        stalled, self.consumer = self.consumer, None
        if stalled is not None:
            try:
                call_within(stalled.close, KAFKA_TIMEOUT_S, "closing the stalled consumer")
            except KafkaException as error:  # its thread lets go of it when librdkafka does
                log.warning("consumer_close_abandoned", error=str(error))
        self.consumer = self._new_consumer()

    def _new_consumer(self) -> Consumer:
        assert self._listener is not None
        consumer = Consumer(
            {
                "session.timeout.ms": 10_000,  # a default an operator may override
                **self.config,
                "group.id": self.settings.group_id,
                # Static membership: a restarted instance takes its partitions back at once instead
                # of waiting out the dead member's session, and a second process with the same
                # FRAUD_INSTANCE_ID fences this one, as its transactional id fences the producer.
                "group.instance.id": self.settings.instance_id,
                "partition.assignment.strategy": "range",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "error_cb": self._on_consumer_error,
            }
        )
        listener = self._listener
        consumer.subscribe(
            list(self.topics.inputs.values()),
            on_assign=listener.on_assign,
            on_revoke=listener.on_revoke,
            on_lost=listener.on_lost,
        )
        return consumer

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback: readiness drops while no broker can be reached, and a fenced
        group membership is kept for the loop to stop on."""
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.readiness.brokers_down = True
        log.warning("kafka_client_error", error=str(error))

    def _on_consumer_error(self, error: KafkaError) -> None:
        """The group consumer's error callback: a taken-over membership is kept for the loop."""
        if consumer_fenced(error):
            self.fenced = self.fenced or error
        self._on_client_error(error)
