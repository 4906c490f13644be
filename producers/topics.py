"""The input topics, created as the detector service would create them before anything is published.

Left to the broker's auto-creation, a missing topic gets the broker's default partition count (1),
and the service then runs one partition wide. So a producer creates missing inputs with the
service's ``FRAUD_TOPIC_PARTITIONS`` (or the count of the input that exists), and refuses inputs whose
partition counts differ: labels join their transactions only when both topics split keys alike.
It also asks Kafka whether this principal may write to them, so a write an ACL refuses is one clear
line before anything is sent (an idempotent producer refused everywhere fails with a fatal error).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

from detector.service.settings import ServiceSettings
from detector.service.topics import TopicLayoutError, wait_for_leaders
from producers.sinks import REFUSALS, ConnectionRefused

_TIMEOUT_S = 30.0


class InputTopicsError(RuntimeError):
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
        try:  # they are described below, which fails until they have leaders
            wait_for_leaders(admin, missing)
        except TopicLayoutError as error:
            raise InputTopicsError(str(error)) from None
        counts.update(dict.fromkeys(missing, partitions))
    first, second = topics
    if counts[first] != counts[second]:
        raise InputTopicsError(
            f"{second!r} has {counts[second]} partitions and {first!r} {counts[first]}: labels join their"
            " transactions only when both topics have the same partition count"
        )
    _refuse_unwritable(admin, list(topics))
    return counts


def _refuse_unwritable(admin: AdminClient, names: list[str]) -> None:
    """Refuse topics whose operations Kafka says this principal is not authorised for writing."""
    described = admin.describe_topics(
        TopicCollection(names), request_timeout=_TIMEOUT_S, include_authorized_operations=True
    )
    for name, future in described.items():
        try:
            allowed = future.result().authorized_operations or []
        except KafkaException as exception:
            raise InputTopicsError(f"cannot use topic {name!r}: {exception.args[0].str()}") from None
        if allowed and not {AclOperation.WRITE, AclOperation.ALL} & set(allowed):
            raise InputTopicsError(
                f"Topic authorization failed: this principal may not write to {name!r}"
                f" (allowed: {', '.join(sorted(op.name for op in allowed))})"
            )


def _connected(config: Mapping[str, str]) -> tuple[AdminClient, dict]:
    """An admin client and the cluster's topics; refused credentials or TLS end the wait at once."""
    refused: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in REFUSALS:
            refused.append(error)

    # confluent-kafka's stub types the config's values as str | int | float | bool: no callbacks
    admin = AdminClient({**config, "error_cb": on_error})  # type: ignore[dict-item]
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
            hint = (
                " This principal may not create it, nor see it if it exists: no ACL lets it write there"
                if error.code()
                in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)
                else ""
            )
            raise InputTopicsError(
                f"cannot create topic {name!r} with {partitions} partitions: {error.str()}{hint}"
            ) from None
