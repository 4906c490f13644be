"""Sinks: keys, counting, back-pressure and failures, with a fake producer (no broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from detector.engine.records import Label, Transaction, decode_label, decode_transaction
from detector.kafka_config import client_config, parse_settings
from producers.sinks import ConnectionRefused, JsonlSink, KafkaSink

TX = Transaction("t1", 1_767_225_600.0, "c1", "m1", 12.5, "EUR")
LABEL = Label("t1", "c1", True, 1_767_312_000.0)


class FakeMessage:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Queues produced messages; reports them on poll/flush, failing those whose key is in ``fail``."""

    def __init__(
        self, config: dict[str, Any], full_times: int = 0, fail: frozenset[bytes] = frozenset()
    ) -> None:
        self.config = config
        self.full_times = full_times
        self.fail = fail
        self.pending: list[tuple[str, bytes, Any]] = []
        self.produced: list[tuple[str, bytes, bytes]] = []
        self.polls: list[float] = []
        self.stuck = 0

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if self.full_times:
            self.full_times -= 1
            raise BufferError("Local: Queue full")
        if key == b"too-big":
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.produced.append((topic, key, value))
        self.pending.append((topic, key, on_delivery))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        served = len(self.pending)
        for topic, key, callback in self.pending:
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if key in self.fail else None
            callback(error, FakeMessage(topic))
        self.pending.clear()
        return served

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return self.stuck

    def purge(self) -> None:
        self.purged, self.stuck = self.stuck, 0


def sink_with(producer: FakeProducer) -> KafkaSink:
    def factory(config: dict[str, Any]) -> FakeProducer:
        producer.config = config
        return producer

    # A short flush timeout: the fake's flush returns at once, so the sink's slices would spin until it.
    config = {"bootstrap.servers": "b:9092", "linger.ms": 5}
    return KafkaSink(config, "tx", "lb", flush_timeout=0.3, producer_factory=factory)


def test_messages_are_keyed_by_customer_and_counted_per_topic() -> None:
    producer = FakeProducer({})
    sink = sink_with(producer)
    sink.send_transaction(TX)
    sink.send_label(LABEL)
    report = sink.close()
    assert [(topic, key) for topic, key, _ in producer.produced] == [("tx", b"c1"), ("lb", b"c1")]
    assert decode_transaction(producer.produced[0][2]) == TX
    assert decode_label(producer.produced[1][2]) == LABEL
    assert report.delivered == {"tx": 1, "lb": 1}
    assert report.failed == 0


def test_the_producer_is_idempotent_and_settings_override_the_defaults() -> None:
    producer = FakeProducer({})
    sink_with(producer)
    assert producer.config["enable.idempotence"] is True
    assert producer.config["linger.ms"] == 5
    assert producer.config["bootstrap.servers"] == "b:9092"


def test_a_full_queue_is_waited_out_by_polling_not_dropped() -> None:
    producer = FakeProducer({}, full_times=3)
    sink = sink_with(producer)
    sink.send_transaction(TX)
    assert producer.polls[:3] == [0.1, 0.1, 0.1]
    assert sink.close().delivered == {"tx": 1}


def test_failures_are_counted_with_their_reason() -> None:
    producer = FakeProducer({}, fail=frozenset({b"bad"}))
    sink = sink_with(producer)
    sink.send_transaction(TX)
    sink.send_transaction(Transaction("t2", TX.event_time, "bad", "m1", 1.0))
    sink.send_transaction(Transaction("t3", TX.event_time, "too-big", "m1", 1.0))
    producer.stuck = 2
    report = sink.close()
    assert report.delivered == {"tx": 1}
    assert report.failed == 4
    reasons = dict(report.failures)
    assert reasons.pop("not delivered within the flush timeout of 0.3s") == 2
    assert sorted(reasons.values()) == [1, 1]
    assert any("_MSG_TIMED_OUT" in reason for reason in reasons)
    assert any("too large" in reason.lower() for reason in reasons)


def test_jsonl_sink_writes_one_file_per_topic(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "out", "tx", "lb")
    sink.send_transaction(TX)
    sink.send_label(LABEL)
    sink.send_label(LABEL)
    report = sink.close()
    assert report.delivered == {"tx": 1, "lb": 2}
    lines = (tmp_path / "out" / "lb.jsonl").read_bytes().splitlines()
    assert [decode_label(line) for line in lines] == [LABEL, LABEL]
    assert orjson.loads((tmp_path / "out" / "tx.jsonl").read_bytes()) == TX.to_dict()


def test_client_config_takes_security_from_the_environment_and_lets_overrides_win() -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "env:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "user",
        "KAFKA_SASL_PASSWORD": "secret",
        "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        "KAFKA_UNRELATED": "x",
    }
    config = client_config(None, {"sasl.username": "other"}, environ)
    assert config == {
        "bootstrap.servers": "env:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "other",
        "sasl.password": "secret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert client_config("cli:9092", environ=environ)["bootstrap.servers"] == "cli:9092"
    assert client_config(environ={}) == {"bootstrap.servers": "localhost:9092"}


def test_settings_are_key_value_pairs() -> None:
    assert parse_settings(["acks=all", "sasl.password=a=b"]) == {"acks": "all", "sasl.password": "a=b"}
    with pytest.raises(ValueError, match="key=value"):
        parse_settings(["acks"])


def test_a_refused_login_stops_at_once_and_reports_what_was_not_delivered() -> None:
    producer = FakeProducer({})
    sink = sink_with(producer)
    sink.send_transaction(TX)
    producer.stuck = 1
    producer.config["error_cb"](KafkaError(KafkaError._AUTHENTICATION, "Invalid username or password"))
    with pytest.raises(ConnectionRefused, match="Invalid username or password"):
        sink.send_transaction(TX)
    sink.close()  # the refusal ends the flush at once, and what was queued is purged
    assert producer.purged == 1


def test_a_write_an_acl_refuses_stops_at_once_and_names_the_topic() -> None:
    producer = FakeProducer({})
    sink = sink_with(producer)
    sink.send_transaction(TX)
    producer.stuck = 1
    callback = producer.pending.pop()[2]
    callback(
        KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed"), FakeMessage("tx")
    )
    with pytest.raises(ConnectionRefused, match="Topic authorization failed \\(writing to 'tx'\\)"):
        sink.send_transaction(TX)
    report = sink.close()
    assert producer.purged == 1 and report.failed == 1


def test_a_fatal_client_error_stops_at_once() -> None:
    producer = FakeProducer({})
    sink = sink_with(producer)
    fatal = KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed", fatal=True)
    producer.config["error_cb"](fatal)
    with pytest.raises(ConnectionRefused, match="Cluster authorization failed"):
        sink.send_transaction(TX)


def test_a_fatal_error_raised_by_flush_ends_the_wait_at_once() -> None:
    class FatalOnFlush(FakeProducer):
        def flush(self, timeout: float) -> int:
            raise KafkaException(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, "refused", fatal=True))

        def __len__(self) -> int:
            return 1

    producer = FatalOnFlush({})
    sink = sink_with(producer)
    sink.send_transaction(TX)
    sink.close()
    assert hasattr(producer, "purged"), "what was queued is purged, not waited for"
    with pytest.raises(ConnectionRefused, match="refused"):
        sink.send_transaction(TX)
