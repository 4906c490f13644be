"""The input topics, created as the detector service would create them before anything is published.

Left to the broker's auto-creation, a missing topic gets the broker's default partition count (1),
and the service then runs one partition wide. So a producer creates missing inputs with the
service's ``FRAUD_TOPIC_PARTITIONS`` (or the count of the input that exists), and refuses inputs whose
partition counts differ: labels join their transactions only when both topics split keys alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from detector.service.settings import ServiceSettings
from producers.sinks import REFUSALS, ConnectionRefused

_TIMEOUT_S = 30.0


class TopicLayoutError(RuntimeError):
    """The input topics cannot be used, or created, as they are; the message says what to change."""


def ensure_input_topics(
    config: Mapping[str, str], topics: tuple[str, str], environ: Mapping[str, str]
) -> dict[str, int]:
    """Create whichever of ``topics`` is missing, check both have one layout; their partition counts."""
    settings = ServiceSettings.from_env(environ)
    admin, existing = _connected(config)
    counts = {name: len(existing[name].partitions) for name in topics if name in existing}
    missing = [name for name in topics if name not in counts]
    if missing:
        partitions = next(iter(counts.values()), settings.topic_partitions)
        _create(admin, missing, partitions, settings.replication_factor)
        counts.update(dict.fromkeys(missing, partitions))
    first, second = topics
    if counts[first] != counts[second]:
        raise TopicLayoutError(
            f"{second!r} has {counts[second]} partitions and {first!r} {counts[first]}: labels join their"
            " transactions only when both topics have the same partition count"
        )
    return counts


def _connected(config: Mapping[str, str]) -> tuple[AdminClient, dict]:
    """An admin client and the cluster's topics; refused credentials or TLS end the wait at once."""
    refused: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in REFUSALS:
            refused.append(error)

    admin = AdminClient({**config, "error_cb": on_error})
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            return admin, admin.list_topics(timeout=1.0).topics
        except KafkaException:
            admin.poll(0)
            if refused:
                raise ConnectionRefused(f"Kafka refused the connection: {refused[0].str()}") from None
            if time.monotonic() > deadline:
                raise


def _create(admin: AdminClient, names: list[str], partitions: int, replication: int) -> None:
    new = [NewTopic(name, partitions, replication) for name in names]
    for name, future in admin.create_topics(new, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as exception:
            error = exception.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:  # someone else created it first
                continue
            raise TopicLayoutError(
                f"cannot create topic {name!r} with {partitions} partitions: {error.str()}"
                " (create it, or let this principal create it)"
            ) from None
