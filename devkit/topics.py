"""Topics created before a run, each partition with a leader, so nothing publishes or reads too early.

A freshly created partition refuses reads and writes until its leader is elected, and a producer
to a missing topic would auto-create it with the broker's defaults; both are kept out of every run.
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka.admin import AdminClient, NewTopic

from detector.service.settings import ServiceSettings
from detector.service.topics import ensure_topics, wait_for_leaders


def create_input_topics(settings: ServiceSettings, partitions: int) -> None:
    """The transactions and labels topics, co-partitioned; the service creates its outputs itself."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    names = [settings.transactions_topic, settings.labels_topic]
    for future in admin.create_topics([NewTopic(name, partitions, 1) for name in names]).values():
        future.result()
    wait_for_leaders(admin, names, partitions)


def create_service_topics(
    settings: ServiceSettings, partitions: int, client: Mapping[str, str] | None = None
) -> None:
    """Every topic the service uses, created as the service would (and waited for), so a run's
    timing or its first records never include the broker creating topics or electing leaders."""
    admin = AdminClient(dict(client or {"bootstrap.servers": settings.bootstrap_servers}))
    ensure_topics(admin, settings.replaced(topic_partitions=partitions))
