"""Run the detector service as a real process against the real broker, and read what it wrote."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from detector.audit.chain import GENESIS, verify_record
from detector.engine.records import Label, Transaction


@dataclass(frozen=True)
class ServiceTopics:
    """Unique topic and group names for one test, and the service environment that uses them."""

    prefix: str = field(default_factory=lambda: f"svc-{uuid.uuid4().hex[:8]}")

    @property
    def transactions(self) -> str:
        return f"{self.prefix}.transactions"

    @property
    def labels(self) -> str:
        return f"{self.prefix}.labels"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    def env(self, bootstrap: str, instance: str = "i1", **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "FRAUD_TRANSACTIONS_TOPIC": self.transactions,
            "FRAUD_LABELS_TOPIC": self.labels,
            "FRAUD_AUDIT_TOPIC": self.audit,
            "FRAUD_DECISIONS_TOPIC": self.decisions,
            "FRAUD_DEAD_LETTER_TOPIC": self.dead_letter,
            "FRAUD_CHECKPOINT_TOPIC": f"{self.prefix}.checkpoints",
            "FRAUD_GROUP_ID": f"{self.prefix}-group",
            "FRAUD_INSTANCE_ID": instance,
            "FRAUD_METRICS_PORT": "0",
            **extra,
        }

    def create_inputs(self, bootstrap: str, partitions: int) -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        new = [NewTopic(name, partitions, 1) for name in (self.transactions, self.labels)]
        for future in admin.create_topics(new).values():
            future.result()
        for topic in new:
            wait_for_leaders(admin, topic.topic, partitions)


def publish(
    bootstrap: str,
    topics: ServiceTopics,
    items: Iterable[Transaction | Label | tuple[bytes | None, bytes | None]],
    raw_topic: str | None = None,
) -> int:
    """Publish in order: transactions and labels keyed by customer; raw (key, value) pairs to ``raw_topic``.

    ``raw_topic`` defaults to the transactions topic.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    failures: list[str] = []

    def delivered(error: KafkaError | None, _: object) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    for item in items:
        if isinstance(item, Transaction):
            topic, key, value = topics.transactions, item.customer_id.encode(), item.to_json()
        elif isinstance(item, Label):
            topic, key, value = topics.labels, item.customer_id.encode(), item.to_json()
        else:
            topic, (key, value) = raw_topic or topics.transactions, item
        producer.produce(topic, value, key=key, on_delivery=delivered)
        producer.poll(0)
        count += 1
    producer.flush(60)
    assert not failures, failures[:3]
    return count


class ServiceProcess:
    """``fraud-detector run`` in a child process, its JSON log in a file.

    Every one started is remembered until stopped or killed, so that a test failing before its
    own ``stop()`` cannot leave a service running (see :meth:`kill_leftovers`).
    """

    running: ClassVar[set[ServiceProcess]] = set()

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "run"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        ServiceProcess.running.add(self)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # never leave a service behind; the test fails on the timeout
            self.process.wait(30)
            raise
        finally:
            self._log.close()
            ServiceProcess.running.discard(self)

    @classmethod
    def kill_leftovers(cls) -> None:
        """Kill every service still running because its test failed before stopping it."""
        for service in list(cls.running):
            service.kill()

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        self.process.kill()
        self.process.wait(30)
        self._log.close()
        ServiceProcess.running.discard(self)

    def log_events(self, name: str) -> list[dict]:
        events = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("event") == name:
                events.append(entry)
        return events


class TopicReader:
    """Reads a topic (read_committed) incrementally; ``records[p]`` is [(offset, value, headers)]."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        partitions = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.records: dict[int, list[tuple[int, bytes, list]]] = {p: [] for p in partitions}

    def drain(self, seconds: float = 1.0) -> None:
        """Read for ``seconds``: to follow a topic that is still being written."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self._consumer.consume(1000, 0.2):
                self._keep(message)

    def drain_to_end(self, timeout: float = 60.0) -> None:
        """Read every record committed so far, however long that takes: once the writers stopped.

        Assigning the partitions again, at the next offsets, makes each report its end afresh.
        """
        self._consumer.assign(
            [
                TopicPartition(self.topic, partition, records[-1][0] + 1 if records else 0)
                for partition, records in self.records.items()
            ]
        )
        short = set(self.records)
        deadline = time.monotonic() + timeout
        while short:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: partitions {sorted(short)} not read to the end")
            for message in self._consumer.consume(1000, 0.2):
                if self._keep(message):
                    short.discard(message.partition())

    def _keep(self, message: Message) -> bool:
        """Keep a record; True when the message says its partition has no more."""
        error = message.error()
        if error is None:
            self.records[message.partition()].append(
                (message.offset(), message.value(), message.headers() or [])
            )
        return error is not None and error.code() == KafkaError._PARTITION_EOF

    def count(self) -> int:
        return sum(len(records) for records in self.records.values())

    def close(self) -> None:
        self._consumer.close()


def audit_decisions(reader: TopicReader, foreign: Collection[tuple[int, int]] = ()) -> Counter[str]:
    """Transaction id -> how many decision records; asserts each partition's chain verifies.

    ``foreign``: (partition, offset) of records written by hand, which must fail as foreign while
    the chain goes on across them.
    """
    decisions: Counter[str] = Counter()
    for partition, records in reader.records.items():
        seq, previous = 0, GENESIS
        for offset, value, _ in records:
            record = orjson.loads(value)
            problem = verify_record(record, seq, previous, partition=partition)
            if (partition, offset) in foreign:
                assert problem is not None and problem.startswith("foreign"), problem
                continue
            assert problem is None, f"chain broken at partition {partition} offset {offset}: {problem}"
            seq, previous = seq + 1, record["chain"]["hash"]
            if record["record_type"] == "decision":
                decisions[record["transaction_id"]] += 1
    return decisions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str) -> int | None:
    """The HTTP status, or None while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_for_leaders(admin: AdminClient, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Creation returns before every partition has a leader; producing before that fails."""
    deadline = time.monotonic() + timeout
    while True:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} has no leader for all {partitions} partitions after {timeout}s")
        time.sleep(0.1)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
