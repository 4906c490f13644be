"""Recovery that fails: retried until it succeeds, and never the occasion to commit unwritten outputs.

The service runs in a thread of the test, so that a Kafka failure can be injected at an exact
point (a commit, a partition's recovery, a consumer's committed offsets); everything else is the
real service on the real broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from detector.engine.config import EngineConfig
from detector.engine.records import Transaction
from detector.service import clients, rebalance
from detector.service.app import DetectorService
from detector.service.partitions import Partitions
from detector.service.settings import ServiceSettings
from devkit.publishing import publish
from devkit.reading import CommittedReader
from tests.integration.service_harness import ServiceTopics, audit_decisions, wait_until
from tests.integration.test_service import simulated


def _injected(what: str) -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TRANSPORT, f"injected: {what}", txn_requires_abort=True))


@pytest.fixture
def topics(kafka_bootstrap: str) -> ServiceTopics:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=1)
    return topics


@pytest.fixture
def service(kafka_bootstrap: str, topics: ServiceTopics) -> Iterator[DetectorService]:
    settings = ServiceSettings.from_env(topics.env(kafka_bootstrap))
    service = DetectorService(settings, EngineConfig(), environ={})
    yield service
    service.stop()


def _run(service: DetectorService) -> threading.Thread:
    thread = threading.Thread(target=service.run, name="detector", daemon=True)
    thread.start()
    return thread


def _recovery_failing_on(
    calls: set[int], then: Callable[[], None] = lambda: None, failure: Callable[[], None] | None = None
) -> Callable[..., Any]:
    """``recover_partition``, failing on the calls numbered in ``calls`` (from 1) after ``then()``:
    by ``failure()``, which raises, or else by an exception raised here."""
    real = rebalance.recover_partition
    made = 0

    def recover(**arguments: Any) -> Any:
        nonlocal made
        made += 1
        if made in calls:
            then()
            if failure is not None:
                failure()
            raise _injected("partition recovery failed")
        return real(**arguments)

    return recover


def _commit_failing_once(service: DetectorService, then: Callable[[], None] = lambda: None) -> list[bool]:
    """Make the service's first commit fail, after ``then()``; the list says whether it has."""
    commit = service.transactions.commit
    failed: list[bool] = []

    def commit_failing_once(owned: Partitions) -> None:
        if not failed:
            failed.append(True)
            then()
            raise _injected("commit failed")
        commit(owned)

    service.transactions.commit = commit_failing_once  # type: ignore[method-assign]
    return failed


def _committed_transactions_offset(bootstrap: str, topics: ServiceTopics) -> int:
    group = topics.env(bootstrap)["FRAUD_GROUP_ID"]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [committed] = consumer.committed([TopicPartition(topics.transactions, 0)], timeout=30)
        return max(committed.offset, 0)
    finally:
        consumer.close()


def _every_transaction_decided_once(
    kafka_bootstrap: str, topics: ServiceTopics, service: DetectorService
) -> None:
    """Run the service on 2,000 transactions' worth of input; each gets one decision, and it is ready."""
    items = simulated(2_000)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    publish(topics.settings(kafka_bootstrap), items)
    thread = _run(service)
    wait_until(lambda: service.transactions_committed > 0 or not thread.is_alive(), 120, "a first commit")
    audit = CommittedReader(kafka_bootstrap, topics.audit)  # the service has created it by now

    def all_decided() -> bool:
        audit.drain(0.5)
        return sum(audit_decisions(audit).values()) >= n_transactions or not thread.is_alive()

    wait_until(all_decided, 180, "every transaction decided")
    wait_until(lambda: service.ready, 30, "readiness")
    service.stop()
    thread.join(120)
    audit.drain_to_end()
    decisions = audit_decisions(audit)
    audit.close()
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}


def test_a_stop_while_recovery_fails_commits_no_offset_beyond_the_written_decisions(
    kafka_bootstrap: str, topics: ServiceTopics, service: DetectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch's commit fails; recovering from it fails too, as a stop request comes.

    The processors then hold the aborted batch's state and input positions: checkpointing them
    on the way out would commit offsets whose decisions were never written.
    """
    publish(topics.settings(kafka_bootstrap), simulated(300))
    failed = _commit_failing_once(service)
    monkeypatch.setattr(rebalance, "recover_partition", _recovery_failing_on({2}, then=service.stop))
    thread = _run(service)
    thread.join(120)
    assert not thread.is_alive() and failed

    decisions = CommittedReader(kafka_bootstrap, topics.decisions)
    decisions.drain_to_end()
    decided = decisions.count()
    decisions.close()
    assert _committed_transactions_offset(kafka_bootstrap, topics) <= decided


def test_a_recovery_that_fails_at_assignment_is_retried_and_every_transaction_decided(
    kafka_bootstrap: str, topics: ServiceTopics, service: DetectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebalance, "recover_partition", _recovery_failing_on({1}))
    _every_transaction_decided_once(kafka_bootstrap, topics, service)


def test_an_error_raised_by_librdkafka_inside_a_rebalance_callback_is_recovered_from(
    kafka_bootstrap: str, topics: ServiceTopics, service: DetectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kafka call that fails inside ``on_assign`` raises from librdkafka's C code. Let out of the
    callback, such an error came out of ``consume()`` as a bare ``KafkaError``, which no ``except``
    clause matches, and the service exited (seen after a broker restart, from an abort that failed
    in a recovery). Provoked here with a real librdkafka error: an abort with no transaction open."""

    def abort_with_no_transaction_open() -> None:
        assert service.clients.producer is not None
        service.clients.producer.abort_transaction(1)
        raise AssertionError("librdkafka accepted an abort with no transaction open")  # ends the service

    monkeypatch.setattr(
        rebalance, "recover_partition", _recovery_failing_on({1}, failure=abort_with_no_transaction_open)
    )
    _every_transaction_decided_once(kafka_bootstrap, topics, service)


class _StallingConsumer(Consumer):
    """A consumer whose committed offsets never come once it is marked stalled."""

    stalled: ClassVar[list[Consumer]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> Any:
        if self in self.stalled:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected: no committed offsets"))
        return super().committed(partitions, timeout=timeout)


def test_a_consumer_whose_committed_offsets_never_come_is_replaced_and_every_transaction_decided(
    kafka_bootstrap: str, topics: ServiceTopics, service: DetectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a broker restart that outlasted the group session, ``committed()`` of the service's
    consumer timed out for minutes while the brokers answered its producer. Simulated here: from a
    failed commit on, the consumer it had never gets its committed offsets again."""
    monkeypatch.setattr(clients, "Consumer", _StallingConsumer)
    monkeypatch.setattr(_StallingConsumer, "stalled", [])

    def stall_its_consumer() -> None:
        consumer = service.clients.consumer
        assert consumer is not None  # the service is running: it has one
        _StallingConsumer.stalled.append(consumer)

    _commit_failing_once(service, then=stall_its_consumer)
    _every_transaction_decided_once(kafka_bootstrap, topics, service)
    assert _StallingConsumer.stalled and service.clients.consumer is not _StallingConsumer.stalled[0]
