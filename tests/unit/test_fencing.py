"""A fenced consumer is answered by one rejoin per window; a second fencing within it ends the process.
A fencing is recognised wherever it shows first: the consumer, the offsets of a transaction, a rewind."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from detector.service import fencing
from detector.service.fencing import (
    FenceTolerance,
    InstanceFenced,
    consumer_fenced,
    fatal_cause,
    membership_taken,
    timed_out,
)
from detector.service.rebalance import rewind


def test_one_fencing_per_window_is_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    tolerance = FenceTolerance()
    assert tolerance.tolerated()
    assert not tolerance.tolerated()  # again at once: another process holds the id
    monkeypatch.setattr(fencing, "FENCE_WINDOW_S", 0.0)
    assert tolerance.tolerated()


def test_only_the_consumers_fatal_error_counts_as_fenced() -> None:
    assert consumer_fenced(KafkaError(KafkaError._FATAL, "Static consumer fenced"))
    assert not consumer_fenced(KafkaError(KafkaError._TRANSPORT, "broker down"))
    assert not consumer_fenced(KafkaError(KafkaError._PARTITION_EOF))


def test_offsets_refused_for_a_taken_over_membership_are_a_fencing_but_a_fenced_producer_is_not() -> None:
    assert membership_taken(KafkaError(KafkaError.FENCED_INSTANCE_ID, "Static consumer fenced"))
    assert not membership_taken(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))


class _DisownedConsumer:
    """A consumer whose partitions went to another process with its instance id."""

    def seek(self, tp: TopicPartition) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, f"Failed to seek to offset {tp.offset}"))


def test_a_rewind_refused_because_the_consumer_no_longer_owns_the_partition_is_a_fencing() -> None:
    with pytest.raises(InstanceFenced):
        rewind(_DisownedConsumer(), TopicPartition("transactions", 0, 5))  # type: ignore[arg-type]


def test_a_fencing_of_a_transaction_open_past_its_timeout_is_told_apart_from_another_process() -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    assert timed_out(fenced, open_s=16.0, timeout_ms=15_000)
    assert not timed_out(fenced, open_s=2.0, timeout_ms=15_000)  # another process, then
    assert not timed_out(KafkaError(KafkaError._TRANSPORT, "broker down"), open_s=16.0, timeout_ms=15_000)


class _Producer:
    """A producer whose ``begin_transaction`` fails with ``error``, or would begin one."""

    def __init__(self, error: KafkaError | None = None) -> None:
        self.error = error
        self.began = 0

    def begin_transaction(self) -> None:
        self.began += 1
        if self.error is not None:
            raise KafkaException(self.error)


def test_the_bare_fatal_error_of_a_produce_is_resolved_to_the_fencing_that_caused_it() -> None:
    bare = KafkaError(KafkaError._FATAL, "Unable to produce message: Local: Fatal error")
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    assert fatal_cause(_Producer(fenced), bare) is fenced  # type: ignore[arg-type]
    # An error that says what it is is not looked into; a refusal that is not fatal explains nothing.
    producer = _Producer(fenced)
    assert fatal_cause(producer, fenced) is fenced and producer.began == 0  # type: ignore[arg-type]
    refused = KafkaError(KafkaError._STATE, "Operation not valid in state InTransaction")
    assert fatal_cause(_Producer(refused), bare) is bare  # type: ignore[arg-type]
