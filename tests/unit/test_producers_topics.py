"""Producers create missing input topics as the detector would, and refuse inputs of two layouts."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation

from producers import topics
from producers.sinks import ConnectionRefused
from producers.topics import InputTopicsError, ensure_input_topics

INPUTS = ("tx", "lb")


class FakeAdmin:
    """A cluster holding ``existing`` topics (name -> partitions); creation fails with ``refuse``.

    This principal may do ``allowed`` on every topic.
    """

    def __init__(
        self,
        existing: dict[str, int],
        refuse: int | None = None,
        login: int | None = None,
        allowed: tuple[AclOperation, ...] = (AclOperation.DESCRIBE, AclOperation.WRITE),
    ) -> None:
        self.existing = existing
        self.refuse = refuse
        self.login = login
        self.allowed = allowed
        self.created: list[tuple[str, int, int]] = []
        self.config: dict[str, Any] = {}

    def __call__(self, config: dict[str, Any]) -> FakeAdmin:
        self.config = config
        return self

    def list_topics(self, timeout: float) -> SimpleNamespace:
        if self.login is not None:
            self.config["error_cb"](KafkaError(self.login, "Invalid username or password"))
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return SimpleNamespace(
            topics={
                name: SimpleNamespace(partitions=dict.fromkeys(range(n))) for name, n in self.existing.items()
            }
        )

    def poll(self, timeout: float) -> int:
        return 0

    def describe_topics(
        self, topics: TopicCollection, request_timeout: float, include_authorized_operations: bool
    ) -> dict[str, Future]:
        assert include_authorized_operations
        futures = {}
        for name in topics.topic_names:
            future: Future = Future()
            future.set_result(SimpleNamespace(authorized_operations=list(self.allowed)))
            futures[name] = future
        return futures

    def create_topics(self, new: list[Any], request_timeout: float) -> dict[str, Future]:
        futures = {}
        for topic in new:
            future: Future = Future()
            if self.refuse is None:
                self.created.append((topic.topic, topic.num_partitions, topic.replication_factor))
                future.set_result(None)
            else:
                future.set_exception(KafkaException(KafkaError(self.refuse, "Authorization failed.")))
            futures[topic.topic] = future
        return futures


def install(monkeypatch: pytest.MonkeyPatch, admin: FakeAdmin) -> FakeAdmin:
    monkeypatch.setattr(topics, "AdminClient", admin)
    return admin


def test_missing_inputs_get_the_service_partition_count(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = install(monkeypatch, FakeAdmin({}))
    assert ensure_input_topics({}, INPUTS, {}) == {"tx": 3, "lb": 3}
    assert admin.created == [("tx", 3, 1), ("lb", 3, 1)]
    admin = install(monkeypatch, FakeAdmin({}))
    environ = {"FRAUD_TOPIC_PARTITIONS": "6", "FRAUD_REPLICATION_FACTOR": "2"}
    assert ensure_input_topics({}, INPUTS, environ) == {"tx": 6, "lb": 6}
    assert admin.created == [("tx", 6, 2), ("lb", 6, 2)]


def test_a_missing_input_gets_the_count_of_the_existing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = install(monkeypatch, FakeAdmin({"lb": 5}))
    assert ensure_input_topics({}, INPUTS, {"FRAUD_TOPIC_PARTITIONS": "2"}) == {"tx": 5, "lb": 5}
    assert admin.created == [("tx", 5, 1)]


def test_existing_inputs_of_different_layouts_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = install(monkeypatch, FakeAdmin({"tx": 3, "lb": 1}))
    with pytest.raises(InputTopicsError, match="'lb' has 1 partitions and 'tx' 3"):
        ensure_input_topics({}, INPUTS, {})
    assert admin.created == []


def test_a_refused_creation_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeAdmin({}, refuse=KafkaError.TOPIC_AUTHORIZATION_FAILED))
    with pytest.raises(InputTopicsError, match="cannot create topic 'tx' with 3 partitions: Authorization"):
        ensure_input_topics({}, INPUTS, {})


def test_a_topic_created_meanwhile_by_someone_else_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeAdmin({}, refuse=KafkaError.TOPIC_ALREADY_EXISTS))
    assert ensure_input_topics({}, INPUTS, {}) == {"tx": 3, "lb": 3}


def test_a_refused_login_ends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeAdmin({}, login=KafkaError._AUTHENTICATION))
    with pytest.raises(ConnectionRefused, match="Invalid username or password"):
        ensure_input_topics({}, INPUTS, {})


def test_inputs_this_principal_may_not_write_are_refused_before_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(monkeypatch, FakeAdmin({"tx": 3, "lb": 3}, allowed=(AclOperation.DESCRIBE, AclOperation.READ)))
    with pytest.raises(InputTopicsError, match="may not write to 'tx' \\(allowed: DESCRIBE, READ\\)"):
        ensure_input_topics({}, INPUTS, {})
    install(monkeypatch, FakeAdmin({"tx": 3, "lb": 3}, allowed=(AclOperation.ALL,)))
    assert ensure_input_topics({}, INPUTS, {}) == {"tx": 3, "lb": 3}
