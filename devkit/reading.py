"""Topics read as a payment system or an analyst would: committed records only, outside any group.

Built on the service's own reader configuration (:func:`detector.service.reading.reader_config`), so
what a run reads back is what the service itself would take for committed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from detector.service.reading import reader_config

Record = tuple[int, bytes | None, list[tuple[str, bytes | None]]]  # offset, value, headers


def committed_consumer(
    bootstrap: str, topic: str, config: Mapping[str, Any] | None = None
) -> tuple[Consumer, list[int]]:
    """A read_committed consumer (with ``config`` over the defaults) assigned every partition of
    ``topic`` from its beginning, and those partitions."""
    group = f"devkit-reader-{uuid.uuid4().hex[:8]}"  # required by the client, never joined
    consumer = Consumer({**reader_config({"bootstrap.servers": bootstrap}, group), **(config or {})})
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    return consumer, partitions


def _record(message: Message) -> Record:
    offset = message.offset()
    assert offset is not None, "a record consumed without error has its offset"
    # confluent-kafka's stub types headers as what produce() takes too (a dict); a consumer's are a list
    return offset, message.value(), message.headers() or []  # type: ignore[return-value]


class CommittedReader:
    """Reads a topic incrementally; ``records[p]`` is what ``keep`` made of each record of partition
    ``p`` (by default (offset, value, headers)), in offset order."""

    def __init__(self, bootstrap: str, topic: str, keep: Callable[[Message], Any] = _record) -> None:
        self.topic = topic
        self._keep_record = keep
        self._consumer, partitions = committed_consumer(bootstrap, topic)
        self._next = dict.fromkeys(partitions, 0)
        self.records: dict[int, list] = {p: [] for p in partitions}

    def __enter__(self) -> CommittedReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
        self._consumer.assign([TopicPartition(self.topic, p, offset) for p, offset in self._next.items()])
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
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None, "a record consumed without error has both"
            self.records[partition].append(self._keep_record(message))
            self._next[partition] = offset + 1
        return error is not None and error.code() == KafkaError._PARTITION_EOF

    def count(self) -> int:
        return sum(len(records) for records in self.records.values())

    def close(self) -> None:
        self._consumer.close()


class ArrivalReader:
    """Notes, on a thread from its creation until :meth:`close`, when each key of a topic first
    became readable, for latency.

    ``arrived`` maps the record key to ``clock()`` at its first arrival; ``created`` to the record's
    Kafka timestamp (CreateTime: when it was produced, inside its transaction) in seconds; ``repeats``
    counts records whose key had arrived before.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        clock: Callable[[], float] = time.time,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._consumer, _ = committed_consumer(bootstrap, topic, config)
        self._clock = clock
        self.arrived: dict[bytes | None, float] = {}  # by key: None for an unkeyed record
        self.created: dict[bytes | None, float] = {}
        self.repeats = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"arrivals-{topic}", daemon=True)
        self._thread.start()  # from now on: every arrival is noted, however soon the first comes

    def __enter__(self) -> ArrivalReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(30)
        self._consumer.close()

    def _read(self) -> None:
        arrived, created = self.arrived, self.created
        while not self._stopping.is_set():
            # poll() returns as soon as a record is readable (consume() would wait out its timeout
            # and add up to that wait to every latency); the rest of the fetch is taken at once.
            first = self._consumer.poll(0.05)
            if first is None:
                continue
            now = self._clock()  # one reading per fetch: its records became readable together
            for message in [first, *self._consumer.consume(1000, 0)]:
                if message.error() is not None:
                    continue
                if message.key() in arrived:
                    self.repeats += 1
                else:
                    arrived[message.key()] = now
                    created[message.key()] = message.timestamp()[1] / 1000.0

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether ``count`` distinct keys arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.arrived) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
