"""Create the service's topics when missing, and refuse to start on a layout that would break it.

Transactions and labels must have the same partition count: labels are keyed by customer like the
transactions, so label ``p`` joins transaction ``p`` only when both topics split keys the same way.
Outputs are written to the partition of their input, so they need at least as many partitions.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic, TopicMetadata

from detector.service.settings import ConfigurationError, ServiceSettings

_FOREVER = "-1"
_TWO_MB = str(2 * 1024 * 1024)
_TIMEOUT_S = 30.0


class TopicLayoutError(ConfigurationError):
    """The topics exist but cannot be used as they are; the message says what to change."""


def topic_configs(settings: ServiceSettings) -> dict[str, dict[str, str]]:
    """Each topic the service needs, with the settings it is created with."""
    return {
        settings.transactions_topic: {},
        settings.labels_topic: {},
        settings.decisions_topic: {},
        # Room for an input that was at the broker's default 1 MB limit, plus the reason headers.
        settings.dead_letter_topic: {"retention.ms": str(30 * 86400 * 1000), "max.message.bytes": _TWO_MB},
        # Append-only and kept forever: analysts replay and verify it from the first record.
        settings.audit_topic: {
            "cleanup.policy": "delete",
            "retention.ms": _FOREVER,
            "retention.bytes": _FOREVER,
        },
        # Only the latest snapshot of each partition matters.
        settings.checkpoint_topic: {
            "cleanup.policy": "compact",
            "segment.ms": str(3600 * 1000),
            "min.cleanable.dirty.ratio": "0.1",
            "max.message.bytes": _TWO_MB,
        },
    }


def shared_topic_configs(settings: ServiceSettings, partitions: int) -> dict[str, tuple[int, dict[str, str]]]:
    """The internal topics of shared learning: name -> (partition count, settings).

    Updates are written to the partition of their input and kept long enough for a learner that was
    down a while; versions are read by every starting scorer from the latest snapshot's offset on;
    the snapshot topic keeps only the latest view.
    """
    week = str(7 * 86400 * 1000)
    return {
        settings.shared_updates_topic: (partitions, {"retention.ms": week, "max.message.bytes": _TWO_MB}),
        settings.shared_versions_topic: (1, {"retention.ms": week, "max.message.bytes": _TWO_MB}),
        settings.shared_snapshots_topic: (
            1,
            {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000), "max.message.bytes": _TWO_MB},
        ),
    }


def ensure_shared_topics(admin: AdminClient, settings: ServiceSettings, partitions: int) -> None:
    """Create the internal topics of shared learning when missing; refuse an updates topic whose
    partition count is not the input's (each input partition writes to its own)."""
    wanted = shared_topic_configs(settings, partitions)
    existing = admin.list_topics(timeout=_TIMEOUT_S).topics
    updates = existing.get(settings.shared_updates_topic)
    if updates is not None and len(updates.partitions) != partitions:
        raise TopicLayoutError(
            f"{settings.shared_updates_topic!r} has {len(updates.partitions)} partitions and the input"
            f" {partitions}: delete it (it holds nothing the learner has not applied) or restore the input"
        )
    _create(admin, {name: spec for name, spec in wanted.items() if name not in existing}, settings)


def _create(
    admin: AdminClient, specs: dict[str, tuple[int, dict[str, str]]], settings: ServiceSettings
) -> None:
    """Create ``specs`` (name -> partitions, config), tolerating another instance creating them first."""
    if not specs:
        return
    new = [
        NewTopic(name, count, settings.replication_factor, config=config)
        for name, (count, config) in specs.items()
    ]
    for name, future in admin.create_topics(new, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):  # another instance created it first
                raise TopicLayoutError(f"cannot create topic {name!r}: {error}") from error
    wait_for_leaders(admin, list(specs))


def wait_for_leaders(
    admin: AdminClient, names: list[str], partitions: int | None = None, timeout: float = _TIMEOUT_S
) -> dict:
    """Topic metadata once every topic of ``names`` is listed (with ``partitions`` partitions, if
    given) with a leader for each partition.

    Creation returns before the new topics show in metadata, and before their leaders are elected;
    producing or describing them before that fails.
    """
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(_has_leaders(topics.get(name), partitions) for name in names):
            return topics
        if time.monotonic() > deadline:
            raise TopicLayoutError(f"topics {names} have no leaders {timeout:.0f} s after creation")
        time.sleep(0.1)


def _has_leaders(topic: TopicMetadata | None, partitions: int | None = None) -> bool:
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    if partitions is not None and len(topic.partitions) != partitions:
        return False
    return all(partition.leader >= 0 for partition in topic.partitions.values())


def ensure_topics(admin: AdminClient, settings: ServiceSettings) -> int:
    """Check the layout, create what is missing, and return the number of input partitions.

    Missing topics get as many partitions as the transactions topic when it exists already (else
    the labels topic, else ``FRAUD_TOPIC_PARTITIONS``). A layout that cannot work is refused before
    anything is created, so a refusal leaves the cluster as it was.
    """
    wanted = topic_configs(settings)
    existing = admin.list_topics(timeout=_TIMEOUT_S).topics
    inputs = [
        existing[name] for name in (settings.transactions_topic, settings.labels_topic) if name in existing
    ]
    partitions = len(inputs[0].partitions) if inputs else settings.topic_partitions
    planned = {name: len(existing[name].partitions) if name in existing else partitions for name in wanted}
    _check_layout(planned, settings)
    missing = {name: (partitions, config) for name, config in wanted.items() if name not in existing}
    if missing:
        _create(admin, missing, settings)
        existing = admin.list_topics(timeout=_TIMEOUT_S).topics
    # Again as created: another instance may have created some of them meanwhile, otherwise.
    return _check_layout({name: len(existing[name].partitions) for name in wanted}, settings)


def _check_layout(counts: dict[str, int], settings: ServiceSettings) -> int:
    """The number of input partitions, if ``counts`` (partitions by topic) is a layout that works."""
    inputs = counts[settings.transactions_topic]
    if counts[settings.labels_topic] != inputs:
        raise TopicLayoutError(
            f"{settings.labels_topic!r} has {counts[settings.labels_topic]} partitions and"
            f" {settings.transactions_topic!r} {inputs}: labels join their transactions only when both"
            " topics have the same partition count"
        )
    too_small = [name for name, count in counts.items() if count < inputs]
    if too_small:
        raise TopicLayoutError(
            f"output topics {too_small} have fewer partitions than the {inputs} input partitions;"
            " each input partition writes to the output partition of the same number"
        )
    return inputs
