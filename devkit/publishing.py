"""Publish a stream to the service's input topics, every record delivered or an error."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, Producer

from detector.engine.records import Label, Transaction
from detector.service.settings import ServiceSettings

RawRecord = tuple[bytes | None, bytes | None]  # key, value: what no encoder would write


class DeliveryError(RuntimeError):
    """Some records were not delivered; the message has the first errors."""


def publish(
    settings: ServiceSettings,
    items: Iterable[Transaction | Label | RawRecord],
    raw_topic: str | None = None,
) -> int:
    """Publish in order, and how many: transactions and labels keyed by customer, to their topics;
    raw (key, value) pairs to ``raw_topic``, by default the transactions topic."""
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "linger.ms": 20}
    )
    failures: list[str] = []

    def delivered(error: KafkaError | None, _: object) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    key: bytes | None
    value: bytes | None
    for item in items:
        if isinstance(item, Transaction | Label):
            key, value = item.customer_id.encode(), item.to_json()
            topic = settings.transactions_topic if isinstance(item, Transaction) else settings.labels_topic
        else:
            topic, (key, value) = raw_topic or settings.transactions_topic, item
        while True:
            try:
                producer.produce(topic, value, key=key, on_delivery=delivered)
                break
            except BufferError:  # a long stream outruns the producer's queue: let it drain
                producer.poll(0.05)
        producer.poll(0)
        count += 1
    if producer.flush(120) or failures:
        raise DeliveryError(f"not every record was delivered: {failures[:3]}")
    return count
