"""Where events go: Kafka topics, or JSONL files for offline runs. Both count what they delivered.

Kafka messages are keyed by customer_id, so a customer's transactions and labels stay in order on
one partition each. Nothing is dropped silently: every message either gets a successful delivery
report or is counted as failed with the reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from detector.engine.records import Label, Transaction

log = logging.getLogger(__name__)

# Throughput settings; --kafka-config overrides any of them.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,  # retries never duplicate or reorder messages
    "linger.ms": 25,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "message.timeout.ms": 120_000,  # a message not delivered by then is reported as failed
    # librdkafka's own lines go through logging (raw on stderr, they bypass the tool's log setup)
    "logger": logging.getLogger("producers.kafka_client"),
}
# Errors no retry can cure: the brokers refused our credentials or TLS, or an ACL refuses the write.
REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})
_NOT_AUTHORISED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
_LOGGED_FAILURES = 10
_POLL_EVERY = 1000  # produce calls between serving delivery reports; polling on each one costs time


class ConnectionRefused(RuntimeError):
    """The brokers refused our credentials, TLS or the write itself: nothing can be delivered, so stop."""


@dataclass
class DeliveryReport:
    delivered: Counter[str] = field(default_factory=Counter)  # by topic (or file stem)
    failures: Counter[str] = field(default_factory=Counter)  # by reason

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


class Sink(Protocol):
    def send_transaction(self, transaction: Transaction) -> None: ...

    def send_label(self, label: Label) -> None: ...

    def close(self) -> DeliveryReport:
        """Deliver everything still pending, release resources, and report."""


class KafkaSink:
    """Produces transactions and labels to two topics with an idempotent producer."""

    def __init__(
        self,
        config: Mapping[str, Any],
        transactions_topic: str = "transactions",
        labels_topic: str = "labels",
        flush_timeout: float = 300.0,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self.flush_timeout = flush_timeout
        self.report = DeliveryReport()
        self._unpolled = 0
        self._refusal: str | None = None
        self._producer = producer_factory({**PRODUCER_DEFAULTS, "error_cb": self._on_client_error, **config})

    def send_transaction(self, transaction: Transaction) -> None:
        self._produce(self.transactions_topic, transaction.customer_id, transaction.to_json())

    def send_label(self, label: Label) -> None:
        self._produce(self.labels_topic, label.customer_id, label.to_json())

    def close(self) -> DeliveryReport:
        """Flush in short slices, so a refusal (bad credentials) ends the wait at once."""
        deadline = time.monotonic() + self.flush_timeout
        while (remaining := self._flush(1.0)) and self._refusal is None:
            if time.monotonic() > deadline:
                self._fail(f"not delivered within the flush timeout of {self.flush_timeout:g}s", remaining)
                return self.report
        if remaining:
            # Refused: waiting would only retry until message.timeout.ms. Undelivered messages are
            # purged, and each is still reported as failed by its delivery report.
            self._producer.purge()
            self._flush(5.0)
        return self.report

    def _flush(self, timeout: float) -> int:
        """Messages still queued; a fatal error, which the client raises here, counts as a refusal."""
        try:
            return self._producer.flush(timeout)
        except KafkaException as exception:
            self._refusal = exception.args[0].str()
            return len(self._producer)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        if self._refusal is not None:
            raise ConnectionRefused(f"Kafka refused: {self._refusal}")
        while True:
            try:
                self._producer.produce(topic, value, key.encode(), on_delivery=self._on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                self._producer.poll(0.1)
            except KafkaException as error:
                self._fail(error.args[0].str() if error.args else str(error))
                break
        self._unpolled += 1
        if self._unpolled >= _POLL_EVERY:
            self._producer.poll(0)
            self._unpolled = 0

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            topic = message.topic()
            assert topic is not None, "a delivered record has its topic"
            self.report.delivered[topic] += 1
            return
        if error.code() in _NOT_AUTHORISED:
            self._refusal = f"{error.str()} (writing to {message.topic()!r})"
        self._fail(f"{error.name()}: {error.str()}")

    def _on_client_error(self, error: KafkaError) -> None:
        # A fatal error (say an idempotent producer not allowed to write anywhere) fails every message.
        if error.code() in REFUSALS or error.fatal():
            self._refusal = error.str()
        log.warning("kafka client: %s", error.str())

    def _fail(self, reason: str, count: int = 1) -> None:
        if self.report.failed < _LOGGED_FAILURES:
            log.error("delivery failed: %s", reason)
        self.report.failures[reason] += count


class JsonlSink:
    """Writes ``<directory>/<topic>.jsonl`` for each of the two topics, one JSON object a line."""

    def __init__(
        self, directory: str | Path, transactions_topic: str = "transactions", labels_topic: str = "labels"
    ) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.report = DeliveryReport()
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self._files: dict[str, BinaryIO] = {
            topic: (path / f"{topic}.jsonl").open("wb") for topic in (transactions_topic, labels_topic)
        }

    def send_transaction(self, transaction: Transaction) -> None:
        self._write(self.transactions_topic, transaction.to_json())

    def send_label(self, label: Label) -> None:
        self._write(self.labels_topic, label.to_json())

    def close(self) -> DeliveryReport:
        for file in self._files.values():
            file.close()
        return self.report

    def _write(self, topic: str, value: bytes) -> None:
        self._files[topic].write(value + b"\n")
        self.report.delivered[topic] += 1
