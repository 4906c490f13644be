"""One FRAUD_INSTANCE_ID, one process: static membership, fencing, and a clean exit either way.

The instance id is both the transactional id and the static group membership
(``group.instance.id``). A restart with the same id takes the partitions back without waiting
out the dead process's session; a second live process with the same id fences the first, which
exits with code 3 and one log line; a SIGTERM to a process whose producer was fenced ends it with
code 0. No traceback, nothing but JSON lines, and every decision once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from detector.engine.records import Transaction
from detector.service.fencing import EXIT_FENCED, EXIT_STOPPED
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import CommittedReader
from tests.integration.service_harness import (
    ServiceTopics,
    assert_clean_output,
    audit_decisions,
    wait_until,
)
from tests.integration.test_service import decided, simulated

pytestmark = pytest.mark.kafka
SESSION_TIMEOUT_MS = 60_000  # far longer than the test waits: an assignment cannot wait it out


def _started(env: dict[str, str], log: Path) -> ServiceProcess:
    service = ServiceProcess(env, log)
    wait_until(lambda: bool(service.ready_partitions()) or not service.alive(), 90, "partitions recovered")
    assert service.alive(), log.read_text()[-2000:]
    return service


def _each_decided_once(bootstrap: str, topics: ServiceTopics, n_transactions: int) -> None:
    audit = CommittedReader(bootstrap, topics.audit)
    wait_until(lambda: decided(audit) >= n_transactions, 120, "every decision")
    audit.drain_to_end()
    decisions = audit_decisions(audit)
    audit.close()
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}


def test_a_restart_with_the_same_id_gets_its_partitions_back_within_the_session(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    """SIGKILLed, the old member stays in the group for the whole session; a dynamic member
    restarted meanwhile waits for it to expire before anything is assigned."""
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=2)
    items = simulated(1_500, seed=12)
    publish(topics.settings(kafka_bootstrap), items)
    env = topics.env(kafka_bootstrap, "static-1", KAFKA_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS))
    log = tmp_path / "service.log"
    _started(env, log).kill()
    restarted = _started(env, log)  # within 90 s of the kill: the session of 60 s has not expired
    assert restarted.ready_partitions() == {0, 1}
    group = kafka_admin.describe_consumer_groups([env["FRAUD_GROUP_ID"]])[env["FRAUD_GROUP_ID"]].result()
    assert [member.group_instance_id for member in group.members] == ["static-1"]
    _each_decided_once(kafka_bootstrap, topics, sum(isinstance(item, Transaction) for item in items))
    assert restarted.stop() == EXIT_STOPPED
    assert_clean_output(log)


def test_a_second_process_with_the_same_id_fences_the_first_which_exits_with_code_3(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=2)
    items = simulated(2_000, seed=13)
    env = topics.env(kafka_bootstrap, "twin")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _started(env, first_log)
    publish(topics.settings(kafka_bootstrap), items[: len(items) // 2])
    second = ServiceProcess(env, second_log)
    wait_until(lambda: not first.alive(), 90, "the first process to exit, fenced")
    assert first.stop() == EXIT_FENCED
    (fenced,) = first.log_events("instance_fenced")
    assert fenced["instance_id"] == "twin"
    publish(topics.settings(kafka_bootstrap), items[len(items) // 2 :])
    _each_decided_once(kafka_bootstrap, topics, sum(isinstance(item, Transaction) for item in items))
    assert second.stop() == EXIT_STOPPED
    assert_clean_output(first_log, second_log)


def test_a_sigterm_after_the_producer_was_fenced_exits_cleanly(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The stop's final checkpoint and flush meet a fenced producer (the traceback of issue #23)."""
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=1)
    items = simulated(1_000, seed=14)
    publish(topics.settings(kafka_bootstrap), items)
    env = topics.env(kafka_bootstrap, "fenced")
    log = tmp_path / "service.log"
    service = _started(env, log)
    _each_decided_once(kafka_bootstrap, topics, sum(isinstance(item, Transaction) for item in items))
    zombie_slayer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{env['FRAUD_GROUP_ID']}-fenced"}
    )
    zombie_slayer.init_transactions(30)  # bumps the epoch: the service's producer is fenced
    assert service.stop() == EXIT_STOPPED
    assert_clean_output(log)
