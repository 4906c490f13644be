"""One real Kafka broker per test session, from the cheapest source that is there.

In order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers Kafka if a Docker engine answers; else a
local broker from Maven jars (``devbroker``), stopped at the end of the session. Tests that use
any Kafka fixture get the ``kafka`` marker automatically, so ``-m "not kafka"`` runs without a broker.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from detector.service.topics import wait_for_leaders
from devbroker import LocalKafka
from devbroker.jars import kafka_version


@dataclass
class KafkaSession:
    """Where this session's broker came from, and how long it took, for the end-of-run summary."""

    bootstrap: str
    source: str
    local: LocalKafka | None = None
    start_seconds: float | None = None
    stop_seconds: float | None = None


_sessions: list[KafkaSession] = []


def _docker_answers() -> bool:
    """A 2-second ping: no engine (or a hung one) must mean 'no' quickly, never a hang."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _container_kafka() -> Iterator[KafkaSession]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    container = (
        KafkaContainer()
        .with_kraft()
        # Without these a one-broker cluster cannot host the transaction log: init_transactions() hangs.
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    session: KafkaSession | None = None
    began = time.monotonic()
    try:  # a container that failed to become ready is removed too
        container.start()
        session = KafkaSession(
            container.get_bootstrap_server(), "testcontainers", start_seconds=time.monotonic() - began
        )
        _sessions.append(session)
        yield session
    finally:
        began = time.monotonic()
        container.stop()
        if session is not None:
            session.stop_seconds = time.monotonic() - began


def _local_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSession]:
    # pytest keeps the last few temp dirs, so broker.log is there to read after a failed run.
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    broker.start()
    session = KafkaSession(
        broker.bootstrap_servers,
        f"local Apache Kafka {kafka_version(broker.lib_dir)}",
        local=broker,
        start_seconds=broker.start_seconds,
    )
    _sessions.append(session)
    try:
        yield session
    finally:
        began = time.monotonic()
        broker.stop()
        session.stop_seconds = time.monotonic() - began


@pytest.fixture(scope="session")
def _kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSession]:
    """Started only when a test first needs Kafka, so runs without such tests need no broker."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        _sessions.append(KafkaSession(bootstrap, "KAFKA_BOOTSTRAP_SERVERS"))
        yield _sessions[-1]
    elif _docker_answers():
        yield from _container_kafka()
    else:
        yield from _local_kafka(tmp_path_factory)


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka: KafkaSession) -> str:
    """``bootstrap.servers`` of this session's broker."""
    return _kafka.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """One AdminClient for the session; it reconnects by itself after a local broker restart."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def local_kafka(_kafka: KafkaSession) -> Iterator[LocalKafka]:
    """The local broker itself, for tests that stop and restart it; skipped with any other broker.

    If a test leaves it stopped, it is started again (same ports and data) for the tests after it.
    """
    if _kafka.local is None:
        pytest.skip(f"the broker comes from {_kafka.source}; only a local one can be stopped and restarted")
    yield _kafka.local
    if not _kafka.local.running:
        _kafka.local.start()


@pytest.fixture
def make_topic(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    """``make_topic(prefix="tx", partitions=3, config=None) -> name``: a fresh, ready topic, deleted after."""
    created: list[str] = []

    def make(prefix: str = "tx", partitions: int = 3, config: Mapping[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        new = NewTopic(name, num_partitions=partitions, config=dict(config or {}))
        kafka_admin.create_topics([new], operation_timeout=30)[name].result(timeout=60)
        created.append(name)
        wait_for_leaders(kafka_admin, [name], partitions)
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=60)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "_kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Broker start and stop times end up in every CI log, next to the test counts."""
    for session in _sessions:
        started = "" if session.start_seconds is None else f", started in {session.start_seconds:.1f}s"
        if session.local is not None and session.local.fetch_seconds is not None:
            started += f" (of which jar check/fetch {session.local.fetch_seconds:.1f}s)"
        stopped = "" if session.stop_seconds is None else f", stopped in {session.stop_seconds:.1f}s"
        terminalreporter.write_sep("-", "kafka broker")
        terminalreporter.write_line(f"{session.source} at {session.bootstrap}{started}{stopped}")
        if session.local is not None:
            terminalreporter.write_line(f"broker log: {session.local.log_path}")
