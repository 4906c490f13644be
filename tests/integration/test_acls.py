"""Least privilege on Kafka: deploy/acls.json, applied by deploy/acls.py, on a broker that enforces ACLs.

The hash chain detects a foreign record in the audit topic; the ACLs stop it being written at all.
Each tool runs with its own principal and works; every step outside a principal's grant is refused
with a clear error in bounded time, never a hang. The broker (KRaft's StandardAuthorizer, SASL/PLAIN
users) belongs to this module only: users are fixed at its start.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devbroker import Listener, LocalKafka, authorizing_properties
from devkit.process import ServiceProcess
from devkit.reading import CommittedReader
from tests.integration.service_harness import ServiceTopics, wait_until
from tests.integration.test_security import _own_lines
from tests.integration.test_service import _wait_for_topic, decided

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
LISTENER = "SASL_PLAINTEXT"
USERS = {name: secrets.token_hex(8) for name in ("admin", "detector", "analyst", "producer", "intruder")}
TRANSACTIONS = 300
# A refused request is answered at once; these bound the interpreter starts (River for the detector).
REFUSED_WITHIN_S = 60.0
VERIFY = ("-m", "detector.cli", "audit", "verify", "--quiet")  # of $FRAUD_AUDIT_TOPIC


@dataclass(frozen=True)
class AclCluster:
    """The broker, the topic names the ACLs were applied for, and how each principal connects."""

    broker: LocalKafka
    topics: ServiceTopics

    def env(self, user: str) -> dict[str, str]:
        """What a deployment gives a tool of ``user``: the service's topic names, and its login."""
        bootstrap = self.broker.listener_bootstrap(LISTENER)
        return {
            **self.topics.env(bootstrap),
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": USERS[user],
        }

    def env_through_passthrough(self, user: str, properties: Path) -> dict[str, str]:
        """The same login with none of the documented variables: a Java-style properties file for
        the credentials, and a ``KAFKA_*`` variable named after a setting for the mechanism."""
        env = self.env(user)
        settings = {
            "security.protocol": env.pop("KAFKA_SECURITY_PROTOCOL"),
            "sasl.username": env.pop("KAFKA_SASL_USERNAME"),
            "sasl.password": env.pop("KAFKA_SASL_PASSWORD"),
        }
        properties.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        mechanism = env.pop("KAFKA_SASL_MECHANISM")
        return {**env, "KAFKA_SASL_MECHANISMS": mechanism, "KAFKA_CLIENT_PROPERTIES": str(properties)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclCluster]:
    """A broker that refuses whatever no ACL allows, with exactly the ACLs of deploy/acls.json."""
    broker = LocalKafka(
        tmp_path_factory.mktemp("acl-kafka"),
        extra_listeners=(Listener(LISTENER, "SASL_PLAINTEXT"),),
        extra_properties=authorizing_properties(LISTENER, USERS, super_users=["admin"]),
    )
    try:
        broker.start()
        cluster = AclCluster(broker, ServiceTopics())
        applied = _tool(cluster.env("admin"), str(ROOT / "deploy" / "acls.py"))
        assert applied.returncode == 0, applied.stderr
        print(f"\n{applied.stdout.strip()}")
        yield cluster
    finally:
        broker.close()


def test_every_tool_works_with_its_least_privileged_principal(cluster: AclCluster, tmp_path: Path) -> None:
    """The detector creates its topics and decides what the producer publishes; the analyst verifies.

    The producer connects through the pass-through settings only (a properties file and a KAFKA_*
    variable beyond the documented five), as an mTLS or OAUTHBEARER deployment would.
    """
    service = ServiceProcess(cluster.env("detector"), tmp_path / "service.log")
    try:
        assert _wait_for_topic(service, cluster.topics), "the detector did not start with its ACLs"
        published = _simulate(cluster.env_through_passthrough("producer", tmp_path / "producer.properties"))
        assert published.returncode == 0, published.stderr[-3000:]
        audit = CommittedReader(cluster.broker.bootstrap_servers, cluster.topics.audit)
        wait_until(lambda: decided(audit) >= TRANSACTIONS, 120, "a decision for every transaction")
        audit.close()
    finally:
        code = service.stop()
    assert code == 0, service.log_path.read_text(errors="replace")[-3000:]
    verified = _tool(cluster.env("analyst"), *VERIFY)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(f"\nproducer published, detector decided {TRANSACTIONS} transactions; analyst verified the audit")


@pytest.mark.parametrize("user", ["analyst", "producer", "intruder"])
def test_nobody_but_the_detector_can_write_the_audit_topic(
    cluster: AclCluster, user: str, tmp_path: Path
) -> None:
    topics = ("--transactions-topic", cluster.topics.audit, "--labels-topic", cluster.topics.decisions)
    done = _simulate(cluster.env(user), *topics)
    print(f"\n{user} writing the audit: exit {done.returncode}, {_own_lines(done.stderr)[-1:]}")
    assert done.returncode != 0
    assert _names_authorization(done.stderr)


@pytest.mark.parametrize("user", ["producer", "intruder"])
def test_only_the_analyst_and_the_detector_can_read_the_audit(cluster: AclCluster, user: str) -> None:
    done = _tool(cluster.env(user), *VERIFY)
    print(f"\n{user} reading the audit: exit {done.returncode}, {_own_lines(done.stderr)[-1:]}")
    assert done.returncode == 2
    assert _names_authorization(done.stderr)


def test_another_principal_can_neither_publish_nor_run_the_detector(
    cluster: AclCluster, tmp_path: Path
) -> None:
    published = _simulate(cluster.env("intruder"))
    assert published.returncode != 0 and _names_authorization(published.stderr)
    detector = _tool(cluster.env("intruder"), "-m", "detector.cli", "run")
    print(f"\nintruder running the detector: exit {detector.returncode}, {_own_lines(detector.stderr)[-1:]}")
    assert detector.returncode == 2
    assert "Traceback" not in detector.stderr and _names_authorization(detector.stderr)


def _simulate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``fraud-simulate`` to the service's inputs (unless ``args`` say otherwise)."""
    topics = (
        "--transactions-topic",
        env["FRAUD_TRANSACTIONS_TOPIC"],
        "--labels-topic",
        env["FRAUD_LABELS_TOPIC"],
    )
    command = ("-m", "producers.simulate_cli", "--seed", "5", "--transactions", str(TRANSACTIONS), "--quiet")
    return _tool(env, *command, *topics, *args)


def _tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A tool as a deployment runs it: settings from the environment only; killed if it hangs."""
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=REFUSED_WITHIN_S,
        check=False,
        cwd=ROOT,
    )


def _names_authorization(output: str) -> bool:
    return any("authoriz" in line.lower() for line in _own_lines(output))
