"""Read a topic as committed data only, from the beginning or a time, to its end as of now or forever.

The audit topic is written in Kafka transactions, so readers use ``read_committed``: records of an
aborted or still open transaction are never shown. Commit and abort markers take offsets too, so
the end of a partition cannot be recognised by reaching ``high watermark - 1`` (that offset may be
a marker): a partition is finished when a record at or past the end captured at start arrives, or
when the consumer reports the partition EOF (it has caught up with the committed data).

The reader assigns partitions itself: no consumer group membership, no committed offsets, so any
number of analysts can read the same topic without affecting each other or the detector.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from tqdm import tqdm

_TIMEOUT_S = 30.0
_BATCH = 1000


class ReadError(RuntimeError):
    """The topic cannot be read as asked (it does not exist, or the broker stopped answering)."""


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """One committed record: where it is, when Kafka stamped it (ms, None if unknown) and its bytes."""

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


def consumer_config(client: Mapping[str, str]) -> dict[str, str | bool]:
    """``client`` (connection and security) plus what a committed-only, group-free reader needs."""
    return {
        **client,
        "group.id": f"fraud-audit-reader-{uuid.uuid4().hex}",  # required by the client, never joined
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }


def progress_wanted(quiet: bool) -> bool:
    """A progress bar only for a person watching: not with --quiet, not when stderr is a file or pipe."""
    return not quiet and sys.stderr.isatty()


class TopicReader:
    """All partitions of one topic; use as a context manager so the consumer is always closed."""

    def __init__(self, client: Mapping[str, str], topic: str, idle_timeout_s: float = 60.0) -> None:
        self.topic = topic
        self.idle_timeout_s = idle_timeout_s
        self._consumer = Consumer(consumer_config(client))
        try:
            metadata = self._consumer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        except KafkaException as error:
            self._consumer.close()
            raise ReadError(f"cannot reach Kafka to read {topic!r}: {error}") from error
        if metadata is None or metadata.error is not None or not metadata.partitions:
            self._consumer.close()
            reason = metadata.error if metadata is not None and metadata.error else "no partitions"
            raise ReadError(f"cannot read topic {topic!r}: {reason}")
        self.partitions: list[int] = sorted(metadata.partitions)

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._consumer.close()

    def messages(
        self, start_ms: int | None = None, follow: bool = False, progress: bool = False
    ) -> Iterator[TopicMessage]:
        """Committed records in offset order within each partition (partitions interleave).

        ``start_ms``: begin at the first record Kafka stamped at or after this time (epoch ms), in
        each partition; else at the beginning. Without ``follow`` the read stops at the end each
        partition had when the read began; with it, it waits for new records until interrupted.
        """
        ends = {p: self._watermarks(p)[1] for p in self.partitions}
        starts = self._starts(start_ms, ends)
        pending = set(self.partitions) if follow else {p for p in self.partitions if starts[p] < ends[p]}
        self._consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in sorted(pending)])
        total = None if follow else sum(ends[p] - starts[p] for p in pending)
        bar = tqdm(
            total=total,
            unit=" offsets",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
        positions = dict(starts)

        def advance(partition: int, position: int) -> None:
            bar.update(max(0, position - positions[partition]))
            positions[partition] = position

        def finish(partition: int) -> None:
            advance(partition, ends[partition])
            pending.discard(partition)
            self._consumer.pause([TopicPartition(self.topic, partition)])

        try:
            last_seen, last_error = time.monotonic(), None
            while pending:
                if not follow and time.monotonic() - last_seen > self.idle_timeout_s:
                    raise ReadError(
                        f"{self.topic}: partitions {sorted(pending)} did not reach their end after"
                        f" {self.idle_timeout_s:.0f} s without data (last client error: {last_error})"
                    )
                for message in self._consumer.consume(_BATCH, timeout=0.5):
                    partition, error = message.partition(), message.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        if error.fatal():
                            raise KafkaException(error)
                        last_error = error  # informational: the client reconnects and retries by itself
                        continue
                    last_seen = time.monotonic()
                    if partition not in pending:
                        continue  # already finished: past the end captured at start
                    if error is not None:  # EOF: caught up with the committed data
                        if not follow:
                            finish(partition)
                        continue
                    offset = message.offset()
                    assert offset is not None, "a record read without error has its offset"
                    if not follow and offset >= ends[partition]:  # past the end captured at start
                        finish(partition)
                        continue
                    advance(partition, offset + 1)
                    yield _topic_message(message)
                    if not follow and offset + 1 >= ends[partition]:
                        finish(partition)
        finally:
            bar.close()
            self._consumer.unassign()

    def _watermarks(self, partition: int) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=_TIMEOUT_S
            )
        except KafkaException as error:
            raise ReadError(f"cannot get the offsets of {self.topic}[{partition}]: {error}") from error
        return low, high

    def _starts(self, start_ms: int | None, ends: dict[int, int]) -> dict[int, int]:
        if start_ms is None:
            return {p: self._watermarks(p)[0] for p in self.partitions}
        wanted = [TopicPartition(self.topic, p, start_ms) for p in self.partitions]
        found = self._consumer.offsets_for_times(wanted, timeout=_TIMEOUT_S)
        # No record at or after the time: start at the end (nothing to read unless following).
        return {
            tp.partition: ends[tp.partition] if tp.offset in (-1, OFFSET_END) else tp.offset for tp in found
        }


def _topic_message(message: Message) -> TopicMessage:
    kind, stamp = message.timestamp()
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "a record read without error has both"
    return TopicMessage(
        partition=partition,
        offset=offset,
        timestamp_ms=None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
        key=message.key(),
        value=message.value(),
    )
