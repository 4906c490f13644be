"""deploy/acls.json expands to ACL bindings for the topic and group names the service is configured with."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from detector.service.settings import ServiceSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def acls() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_acls", DEPLOY / "acls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grants(acls: ModuleType, environ: dict[str, str]) -> set[tuple[str, str, str, str]]:
    spec = json.loads((DEPLOY / "acls.json").read_text())
    return {
        (b.principal, b.restype.name, b.name, b.operation.name)
        for b in acls.acl_bindings(spec, ServiceSettings.from_env(environ))
    }


def test_names_come_from_the_service_settings(acls: ModuleType) -> None:
    given = grants(acls, {"FRAUD_AUDIT_TOPIC": "audit.v2", "FRAUD_GROUP_ID": "fd"})
    assert ("User:detector", "TOPIC", "audit.v2", "WRITE") in given
    assert ("User:analyst", "TOPIC", "audit.v2", "READ") in given
    assert ("User:detector", "TRANSACTIONAL_ID", "fd-", "WRITE") in given
    assert not any("{" in name for _, _, name, _ in given)


def test_only_the_detector_writes_outside_the_inputs(acls: ModuleType) -> None:
    given = grants(acls, {})
    writers = {
        (who, name) for who, kind, name, operation in given if kind == "TOPIC" and operation == "WRITE"
    }
    assert {name for who, name in writers if who != "User:detector"} == {"transactions", "labels"}
    assert {name for who, name in writers if who == "User:producer"} == {"transactions", "labels"}
    analyst = {(name, operation) for who, _, name, operation in given if who == "User:analyst"}
    assert analyst == {("fraud.audit", "READ"), ("fraud.decisions", "READ")}


def test_the_set_prints_as_kafka_acls_commands(acls: ModuleType) -> None:
    binding = acls.AclBinding(
        ResourceType.TRANSACTIONAL_ID,
        "fraud-detector-",
        ResourcePatternType.PREFIXED,
        "User:detector",
        "*",
        AclOperation.WRITE,
        acls.AclPermissionType.ALLOW,
    )
    assert acls.kafka_acls_command(binding, "kafka:9092") == (
        "kafka-acls.sh --bootstrap-server kafka:9092 --add --allow-principal User:detector"
        " --operation Write --transactional-id fraud-detector- --resource-pattern-type prefixed"
    )
