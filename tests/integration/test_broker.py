"""The test broker is real Kafka: idempotence, consumer groups and transactions work as in production.

The exactly-once pipeline depends on these; a Kafka look-alike that, say, shows aborted records to a
read_committed consumer must fail here. The first tests cover devbroker's own logic and need no broker.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

import devbroker.jars
from devbroker import DevbrokerError, Listener, LocalKafka
from devbroker.__main__ import main as devbroker_main
from devbroker.broker import broker_properties, render_properties
from devbroker.jars import POM, STAMP_NAME, cache_dir, ensure_jars, jars_current, pom_digest

# --- devbroker logic, no broker needed ------------------------------------------------------------


def test_properties_escape_what_java_would_misread() -> None:
    text = render_properties({"log.dirs": "C:\\kafka\\data", "jaas": "line1\nline2", "pad": " x"})
    assert text.splitlines() == ["log.dirs=C:\\\\kafka\\\\data", "jaas=line1\\nline2", "pad=\\ x"]


def test_extra_listener_is_wired_into_every_listener_setting() -> None:
    props = broker_properties(
        "127.0.0.1",
        9093,
        [Listener("PLAINTEXT", "PLAINTEXT", 9092), Listener("EXTERNAL", "SASL_SSL", 9094)],
        Path("/data"),
        extra={"sasl.enabled.mechanisms": "PLAIN", "group.initial.rebalance.delay.ms": "100"},
    )
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,EXTERNAL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,EXTERNAL://127.0.0.1:9094"
    assert props["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    assert props["group.initial.rebalance.delay.ms"] == "100"


def test_stamp_is_current_only_for_the_pom_it_was_written_for(tmp_path: Path) -> None:
    assert not jars_current(tmp_path, b"<project>4.3.1</project>")
    (tmp_path / STAMP_NAME).write_text(pom_digest(b"<project>4.3.1</project>") + "\n")
    assert jars_current(tmp_path, b"<project>4.3.1</project>")
    assert not jars_current(tmp_path, b"<project>4.4.0</project>")


def test_stamped_jars_are_not_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / STAMP_NAME).write_text(pom_digest(POM.read_bytes()))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: fetching would raise
    assert ensure_jars(lib) is False


def test_changed_pom_replaces_the_old_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "kafka_2.13-4.0.0.jar").touch()
    (lib / STAMP_NAME).write_text(pom_digest(b"old pom"))

    def fake_fetch(_pom: Path, out_dir: Path) -> None:
        out_dir.mkdir()
        (out_dir / "kafka_2.13-4.3.1.jar").touch()

    monkeypatch.setattr(devbroker.jars, "_copy_dependencies", fake_fetch)
    assert ensure_jars(lib) is True
    assert sorted(p.name for p in lib.iterdir()) == [STAMP_NAME, "kafka_2.13-4.3.1.jar"]
    assert jars_current(lib, POM.read_bytes())


def test_devbroker_home_moves_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBROKER_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "kafka"


def test_stop_never_signals_a_recorded_pid_that_is_not_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale state file whose PID now belongs to another process must not get that process killed."""
    monkeypatch.setenv("DEVBROKER_HOME", str(tmp_path))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = cache_dir() / "devbroker.json"
        state.parent.mkdir(parents=True)
        state.write_text(
            f'{{"pid": {bystander.pid}, "bootstrap": "127.0.0.1:9092", '
            f'"properties": "{tmp_path}/server.properties", "log": "x"}}'
        )
        assert devbroker_main(["stop"]) == 0
        assert bystander.poll() is None
        assert not state.exists()
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.kafka
def test_a_broker_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalKafka(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(DevbrokerError, match="exited") as failure:
            broker.start()
    assert "Address already in use" in str(failure.value)
    assert not broker.running


# --- real Kafka semantics -----------------------------------------------------------------------

WAIT_SECONDS = 60.0  # a hang guard, not a performance expectation


def _consumer(bootstrap: str, **conf: str | bool) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **conf,
        }
    )


def _poll_until_eof(consumer: Consumer, partitions: int) -> list[Message]:
    """Everything up to the end of every partition (for read_committed, up to the last stable offset)."""
    messages: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + WAIT_SECONDS
    while len(at_end) < partitions:
        assert time.monotonic() < deadline, f"no end of partitions after {len(messages)} messages"
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error, partition = msg.error(), msg.partition()
        assert partition is not None
        if error is not None and error.code() == KafkaError._PARTITION_EOF:
            at_end.add(partition)
            continue
        if error is not None:
            raise KafkaException(error)
        at_end.discard(partition)
        messages.append(msg)
    return messages


def _read_all(bootstrap: str, topic: str, partitions: int, **conf: str | bool) -> list[Message]:
    consumer = _consumer(bootstrap, **conf)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        return _poll_until_eof(consumer, partitions)
    finally:
        consumer.close()


def _values(messages: list[Message]) -> list[str]:
    values = []
    for message in messages:
        value = message.value()
        assert value is not None
        values.append(value.decode())
    return values


@pytest.fixture
def produce_sync(kafka_bootstrap: str) -> Callable[[str, list[str]], None]:
    def produce(topic: str, values: list[str]) -> None:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for value in values:
            producer.produce(topic, value=value.encode(), partition=0)
        assert producer.flush(WAIT_SECONDS) == 0

    return produce


def test_idempotent_producer_keeps_per_key_order_without_duplicates(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("idem", partitions=3)
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 25,  # many in-flight batches: reordering would show
        }
    )
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    sent = [(f"card-{i % 7}", i) for i in range(500)]
    for key, seq in sent:
        producer.produce(topic, key=key.encode(), value=str(seq).encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(WAIT_SECONDS) == 0
    assert errors == []

    received = _read_all(kafka_bootstrap, topic, 3)
    by_key: dict[str, list[int]] = {}
    for msg in received:
        raw_key, value = msg.key(), msg.value()
        assert raw_key is not None and value is not None
        by_key.setdefault(raw_key.decode(), []).append(int(value))
    assert sorted(seq for seqs in by_key.values() for seq in seqs) == list(range(500))
    for key, seqs in by_key.items():
        assert seqs == [seq for k, seq in sent if k == key]
    assert len({m.partition() for m in received}) > 1


def test_two_consumers_in_one_group_split_the_partitions(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("group", partitions=4)
    group = f"split-{uuid.uuid4().hex[:12]}"
    conf: dict[str, str | bool] = {"group.id": group, "enable.partition.eof": False}
    consumers = [_consumer(kafka_bootstrap, **conf) for _ in "ab"]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for consumer in consumers:
                assert consumer.poll(0.2) is None  # nothing produced yet
            owned = [{tp.partition for tp in c.assignment()} for c in consumers]
            if all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}:
                break
            assert time.monotonic() < deadline, f"no stable split of the partitions: {owned}"

        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(40):
            producer.produce(topic, value=str(i).encode(), partition=i % 4)
        assert producer.flush(WAIT_SECONDS) == 0

        got: list[list[Message]] = [[], []]
        deadline = time.monotonic() + WAIT_SECONDS
        while sum(map(len, got)) < 40:
            assert time.monotonic() < deadline, f"only {sum(map(len, got))} of 40 messages arrived"
            for consumer, bucket in zip(consumers, got, strict=True):
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    bucket.append(msg)
        for mine, bucket in zip(owned, got, strict=True):
            assert {m.partition() for m in bucket} <= mine
        assert sorted(int(v) for bucket in got for v in _values(bucket)) == list(range(40))
    finally:
        for consumer in consumers:
            consumer.close()


def test_group_resumes_from_its_committed_offset(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    produce_sync: Callable[[str, list[str]], None],
) -> None:
    topic = make_topic("resume", partitions=1)
    produce_sync(topic, [f"m{i}" for i in range(10)])
    group = f"resume-{uuid.uuid4().hex[:12]}"

    first = _consumer(kafka_bootstrap, **{"group.id": group})
    try:
        first.subscribe([topic])
        seen: list[Message] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"only {len(seen)} messages arrived"
            msg = first.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.append(msg)
        first.commit(message=seen[3], asynchronous=False)
    finally:
        first.close()

    second = _consumer(kafka_bootstrap, **{"group.id": group})
    try:
        assert second.committed([TopicPartition(topic, 0)], timeout=WAIT_SECONDS)[0].offset == 4
        second.subscribe([topic])
        assert _values(_poll_until_eof(second, 1)) == [f"m{i}" for i in range(4, 10)]
    finally:
        second.close()


def test_aborted_transaction_is_invisible_to_read_committed_only(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("txn", partitions=1)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"test-{uuid.uuid4().hex[:12]}"}
    )
    producer.init_transactions(WAIT_SECONDS)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"aborted-{i}".encode())
    # Abort drops queued records: flush first so the aborted records really are in the log.
    assert producer.flush(WAIT_SECONDS) == 0
    producer.abort_transaction(WAIT_SECONDS)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"committed-{i}".encode())
    producer.commit_transaction(WAIT_SECONDS)

    committed = _values(_read_all(kafka_bootstrap, topic, 1, **{"isolation.level": "read_committed"}))
    everything = _values(_read_all(kafka_bootstrap, topic, 1, **{"isolation.level": "read_uncommitted"}))
    assert committed == [f"committed-{i}" for i in range(5)]
    assert everything == [f"aborted-{i}" for i in range(5)] + committed
