"""Read one partition from an offset to its end as of now, as committed data only.

Used at partition assignment, to find the latest checkpoint and the head of the audit chain. The
end is the partition EOF under ``read_committed`` (the last stable offset), so records of an open
or aborted transaction are never taken for the last committed one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition


def reader_config(client: dict[str, Any], group_id: str) -> dict[str, Any]:
    """A consumer that only reads what it is assigned: no group membership, no commits."""
    return {
        **client,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # A read to the end waited out the broker's hold on a fetch at the end of the partition
        # (500 ms by default) each time: half a second per checkpoint or chain head at recovery.
        "fetch.wait.max.ms": 50,
    }


# What a partition answers while its topic is being created or its leader elected.
_LEADERLESS = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
    }
)


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0) -> tuple[int, int]:
    """(low, high) offsets, retrying while the partition has no leader yet (a topic just created)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        except KafkaException as exception:
            error = exception.args[0]
            if not (error.retriable() or error.code() in _LEADERLESS) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_BATCH, _WAIT_S = 1000, 0.05


def read_to_end(
    consumer: Consumer, topic: str, partition: int, start: int, timeout_s: float = 30.0
) -> Iterator[Message]:
    """Messages of ``topic``/``partition`` from ``start`` up to the end seen when reading began.

    Gives up when no record has come for ``timeout_s`` (a long read that makes progress goes on),
    with a retriable ``_TIMED_OUT`` :class:`~confluent_kafka.KafkaException`, so the service
    treats it as any other broker failure: it retries recovery rather than stopping.
    """
    low, high = watermarks(consumer, topic, partition, timeout_s)
    start = max(start, low)
    if start >= high:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            # In batches: a state rebuild reads millions of records, and poll() costs a call each.
            # A short wait: consume() waits out its whole timeout for a batch the tail cannot fill.
            messages = consumer.consume(_BATCH, _WAIT_S)
            if not messages:
                if time.monotonic() > deadline:
                    reason = f"reading {topic}[{partition}]: no record for {timeout_s:.0f} s before its end"
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, reason, retriable=True))
                continue
            deadline = time.monotonic() + timeout_s
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise KafkaException(error)
                yield message
                offset = message.offset()
                assert offset is not None, "a record read without error has its offset"
                if offset >= high - 1:
                    return
    finally:
        consumer.unassign()
