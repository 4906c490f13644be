"""The service creates its topics with the right settings and refuses a layout that would break joins."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from detector.service.settings import ServiceSettings
from detector.service.topics import TopicLayoutError, ensure_topics, topic_configs
from tests.integration.service_harness import ServiceTopics


def settings_for(topics: ServiceTopics, bootstrap: str) -> ServiceSettings:
    return ServiceSettings.from_env(topics.env(bootstrap))


def test_missing_topics_are_created_like_the_inputs_and_the_audit_is_kept_forever(
    kafka_bootstrap: str, kafka_admin: AdminClient
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=5)
    settings = settings_for(topics, kafka_bootstrap)
    assert ensure_topics(kafka_admin, settings) == 5
    assert ensure_topics(kafka_admin, settings) == 5  # idempotent
    metadata = kafka_admin.list_topics(timeout=30).topics
    assert len(metadata[topics.audit].partitions) == 5 and len(metadata[topics.decisions].partitions) == 5
    resources = [ConfigResource("topic", topics.audit), ConfigResource("topic", settings.checkpoint_topic)]
    audit, checkpoints = (future.result() for future in kafka_admin.describe_configs(resources).values())
    assert audit["cleanup.policy"].value == "delete" and audit["retention.ms"].value == "-1"
    assert checkpoints["cleanup.policy"].value == "compact"


def test_labels_with_another_partition_count_are_refused_with_the_reason(
    kafka_bootstrap: str, make_topic
) -> None:
    topics = ServiceTopics()
    settings = ServiceSettings.from_env(
        {
            **topics.env(kafka_bootstrap),
            "FRAUD_TRANSACTIONS_TOPIC": make_topic("tx", partitions=3),
            "FRAUD_LABELS_TOPIC": make_topic("labels", partitions=2),
        }
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    with pytest.raises(TopicLayoutError, match="same partition count"):
        ensure_topics(admin, settings)
    outputs = {settings.decisions_topic, settings.dead_letter_topic, settings.audit_topic}
    outputs.add(settings.checkpoint_topic)
    assert outputs.isdisjoint(admin.list_topics(timeout=30).topics)  # refused before creating any


def test_missing_transactions_are_created_like_the_labels(kafka_bootstrap: str, make_topic) -> None:
    topics = ServiceTopics()
    settings = ServiceSettings.from_env(
        {
            **topics.env(kafka_bootstrap),
            "FRAUD_LABELS_TOPIC": make_topic("labels", partitions=4),
            "FRAUD_TOPIC_PARTITIONS": "3",
        }
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert ensure_topics(admin, settings) == 4
    metadata = admin.list_topics(timeout=30).topics
    assert {len(metadata[name].partitions) for name in topic_configs(settings)} == {4}
