"""Apply the fraud detector's least-privilege ACLs (deploy/acls.json) to a Kafka cluster.

Topic and group names come from the service's own settings (FRAUD_* variables), the admin's
connection from the usual KAFKA_* variables or KAFKA_CLIENT_PROPERTIES. ``--print`` shows the same
set as ``kafka-acls.sh`` commands instead, for clusters managed with Kafka's own tools.

  KAFKA_BOOTSTRAP_SERVERS=kafka:9093 KAFKA_SECURITY_PROTOCOL=SASL_SSL ... python deploy/acls.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from detector.kafka_config import client_config
from detector.service.settings import ServiceSettings, SettingsError

ACLS = Path(__file__).with_name("acls.json")
_TIMEOUT_S = 30.0


def acl_bindings(spec: Mapping, settings: ServiceSettings) -> list[AclBinding]:
    """Every (principal, resource, operation) the spec allows, with the settings' names filled in."""
    names = settings.model_dump()
    bindings = []
    for acl in spec["acls"]:
        principal = spec["principals"][acl["role"]]
        for name in acl["names"]:
            for operation in acl["operations"]:
                bindings.append(
                    AclBinding(
                        ResourceType[acl["resource"]],
                        name.format(**names),
                        ResourcePatternType[acl["pattern"]],
                        principal,
                        "*",
                        AclOperation[operation],
                        AclPermissionType.ALLOW,
                    )
                )
    return bindings


def kafka_acls_command(binding: AclBinding, bootstrap: str) -> str:
    """The ``kafka-acls.sh`` line that adds ``binding``."""
    resource = {
        ResourceType.TOPIC: "--topic",
        ResourceType.GROUP: "--group",
        ResourceType.TRANSACTIONAL_ID: "--transactional-id",
    }[binding.restype]
    return (
        f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal {binding.principal}"
        f" --operation {binding.operation.name.title().replace('_', '')} {resource} {binding.name}"
        f" --resource-pattern-type {binding.resource_pattern_type.name.lower()}"
    )


def apply(admin: AdminClient, bindings: list[AclBinding]) -> None:
    """Create every binding (creating one that exists is a no-op); the first refusal is raised."""
    for future in admin.create_acls(bindings, request_timeout=_TIMEOUT_S).values():
        future.result()


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--acls", type=Path, default=ACLS, help="the ACL set (default: deploy/acls.json)")
    parser.add_argument("--print", action="store_true", help="print kafka-acls.sh commands, apply nothing")
    args = parser.parse_args(argv)
    try:
        settings = ServiceSettings.from_env(environ)
        bindings = acl_bindings(json.loads(args.acls.read_text()), settings)
        config = client_config(environ=environ)
    except (OSError, ValueError, KeyError, SettingsError) as error:
        print(f"acls: {error}", file=sys.stderr)
        return 2
    if args.print:
        print("\n".join(kafka_acls_command(binding, config["bootstrap.servers"]) for binding in bindings))
        return 0
    try:
        apply(AdminClient(config), bindings)
    except KafkaException as error:
        print(f"acls: Kafka refused the ACLs: {error.args[0].str()}", file=sys.stderr)
        return 1
    print(f"applied {len(bindings)} ACLs from {args.acls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
