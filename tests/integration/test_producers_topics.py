"""Producers create missing input topics as the detector would, and refuse inputs of two layouts."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient

from producers import topics
from producers.topics import InputTopicsError, ensure_input_topics

pytestmark = pytest.mark.kafka


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"inputs-tx-{suffix}", f"inputs-labels-{suffix}"


def partitions(admin: AdminClient, name: str) -> int:
    return len(admin.list_topics(name, timeout=30).topics[name].partitions)


def test_missing_inputs_get_the_service_partition_count(
    kafka_bootstrap: str, kafka_admin: AdminClient
) -> None:
    inputs = names()
    counts = ensure_input_topics(
        {"bootstrap.servers": kafka_bootstrap}, inputs, {"FRAUD_TOPIC_PARTITIONS": "6"}
    )
    assert counts == dict.fromkeys(inputs, 6)
    assert [partitions(kafka_admin, name) for name in inputs] == [6, 6]


def test_a_missing_input_gets_the_count_of_the_existing_one(
    kafka_bootstrap: str, kafka_admin: AdminClient, make_topic
) -> None:
    labels = make_topic("inputs-labels", partitions=5)
    transactions = f"inputs-tx-{uuid.uuid4().hex[:8]}"
    environ = {"FRAUD_TOPIC_PARTITIONS": "2"}
    counts = ensure_input_topics({"bootstrap.servers": kafka_bootstrap}, (transactions, labels), environ)
    assert counts == {transactions: 5, labels: 5}
    assert partitions(kafka_admin, transactions) == 5


def test_existing_inputs_of_different_layouts_are_refused(kafka_bootstrap: str, make_topic) -> None:
    transactions, labels = make_topic("inputs-tx", partitions=3), make_topic("inputs-labels", partitions=1)
    with pytest.raises(InputTopicsError, match=f"'{labels}' has 1 partitions and '{transactions}' 3"):
        ensure_input_topics({"bootstrap.servers": kafka_bootstrap}, (transactions, labels), {})


def test_a_topic_created_meanwhile_by_someone_else_is_fine(kafka_admin: AdminClient, make_topic) -> None:
    """Between listing the topics and creating the missing one, another producer created it."""
    created = make_topic("inputs-tx", partitions=3)
    topics._create(kafka_admin, [created], 3, 1)  # TOPIC_ALREADY_EXISTS: nothing to do
    assert partitions(kafka_admin, created) == 3
