"""KafkaSink against a real broker: keys, counts, back-pressure and the failures it reports.

Refused logins and writes an ACL forbids are tested end to end with secured brokers in
test_security.py and test_acls.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from detector.engine.records import Label, Transaction, decode_label, decode_transaction
from devkit.ports import free_port
from devkit.reading import CommittedReader
from producers.sinks import KafkaSink

pytestmark = pytest.mark.kafka

TX = Transaction("t1", 1_767_225_600.0, "c1", "m1", 12.5, "EUR")
LABEL = Label("t1", "c1", True, 1_767_312_000.0)


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    with CommittedReader(bootstrap, topic, keep=lambda m: (m.key(), m.value())) as reader:
        reader.drain_to_end()
    return [record for records in reader.records.values() for record in records]


def test_messages_are_keyed_by_customer_and_counted_per_topic(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    tx_topic, label_topic = make_topic("tx", 1), make_topic("labels", 1)
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap}, tx_topic, label_topic)
    sink.send_transaction(TX)
    sink.send_label(LABEL)
    report = sink.close()
    assert report.delivered == {tx_topic: 1, label_topic: 1} and report.failed == 0
    [(tx_key, tx_value)] = read_all(kafka_bootstrap, tx_topic)
    [(label_key, label_value)] = read_all(kafka_bootstrap, label_topic)
    assert (tx_key, decode_transaction(tx_value)) == (b"c1", TX)
    assert (label_key, decode_label(label_value)) == (b"c1", LABEL)


def test_the_producer_is_idempotent_and_settings_override_the_defaults(kafka_bootstrap: str) -> None:
    seen: dict[str, Any] = {}

    def producer(config: dict[str, Any]) -> Producer:
        seen.update(config)
        return Producer(config)

    KafkaSink({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5}, producer_factory=producer).close()
    assert seen["enable.idempotence"] is True
    assert seen["linger.ms"] == 5


def test_a_full_queue_is_waited_out_not_dropped(kafka_bootstrap: str, make_topic: Callable[..., str]) -> None:
    topic = make_topic("tx", 1)
    config = {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 2}
    sink = KafkaSink(config, topic, topic)
    for n in range(50):
        sink.send_transaction(Transaction(f"t{n}", TX.event_time, "c1", "m1", 1.0))
    assert sink.close().delivered == {topic: 50}
    assert len(read_all(kafka_bootstrap, topic)) == 50


def test_a_message_too_large_is_counted_with_its_reason(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("tx", 1)
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 1000}, topic, topic)
    sink.send_transaction(TX)
    sink.send_transaction(Transaction("big", TX.event_time, "c1", "m" * 2000, 1.0))
    report = sink.close()
    assert report.delivered == {topic: 1}
    [(reason, count)] = report.failures.items()
    assert count == 1 and "too large" in reason.lower()


def test_what_a_missing_broker_never_took_is_counted_after_the_flush_timeout() -> None:
    sink = KafkaSink({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, flush_timeout=2.0)
    sink.send_transaction(TX)
    sink.send_label(LABEL)
    report = sink.close()
    assert report.delivered == {}
    assert dict(report.failures) == {"not delivered within the flush timeout of 2s": 2}
