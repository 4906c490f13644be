"""Kafka security end to end, on a broker of its own with a SASL_SSL listener (PLAIN over TLS).

The service, the simulator and an audit reader connect with only the documented environment
settings; wrong credentials must fail fast with an error that names authentication; with
``FRAUD_PSEUDONYM_KEY`` set, no raw customer id reaches the audit topic.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from detector.audit.reader import TopicReader as AuditReader
from detector.audit.records import pseudonymise
from detector.kafka_config import client_config
from devbroker import Listener, LocalKafka
from devkit.process import ServiceProcess
from devkit.reading import CommittedReader
from tests.integration.service_harness import ServiceTopics, audit_decisions, wait_until
from tests.integration.test_service import _wait_for_topic, decided
from tests.integration.tls import Certificates, make_certificates

pytestmark = pytest.mark.kafka

LISTENER = "SASL_SSL"
USER = "detector"
PASSWORD = secrets.token_hex(12)
TRANSACTIONS = 600
# A bad password is refused by the broker in well under a second; without the check the detector
# would fail after its 30 s metadata timeout and the simulator after 120 s (message.timeout.ms).
# Counted from the detector's "starting" line, so a slow interpreter start does not count.
FAIL_FAST_S = 20.0
SIMULATOR_FAIL_FAST_S = 60.0
# Few cards, so every card pays several times and "same card, same token" is tested.
SIMULATION = {"population": {"cards": 40, "terminals": 15}}


@dataclass(frozen=True)
class SecureBroker:
    """The broker, and the CA its clients must trust."""

    broker: LocalKafka
    certificates: Certificates

    @property
    def plaintext(self) -> str:
        """For the test's own set-up and checks only; the code under test gets :meth:`client_env`."""
        return self.broker.bootstrap_servers

    def client_env(self, password: str = PASSWORD) -> dict[str, str]:
        """The documented settings a deployment puts in the environment of the service and producers."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.listener_bootstrap(LISTENER),
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": password,
            "KAFKA_SSL_CA_LOCATION": str(self.certificates.ca_pem),
        }


@dataclass(frozen=True)
class SecuredRun:
    """What one simulator + service run over SASL_SSL left behind."""

    customers: dict[str, str]  # transaction id -> raw customer id, from the simulator's truth file
    audit: CommittedReader
    audit_bytes: list[bytes]  # every key and value of the audit topic, read over SASL_SSL
    pseudonym_key: str


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker of this module only: the session's has no TLS listener, and users are fixed at start."""
    directory = tmp_path_factory.mktemp("secure-kafka")
    certificates = make_certificates(directory / "tls")
    jaas = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
    broker = LocalKafka(
        directory / "broker",
        extra_listeners=(Listener(LISTENER, "SASL_SSL"),),
        extra_properties={
            **certificates.broker_properties(LISTENER),
            "sasl.enabled.mechanisms": "PLAIN",
            f"listener.name.{LISTENER.lower()}.plain.sasl.jaas.config": jaas,
        },
    )
    try:
        broker.start()
        yield SecureBroker(broker, certificates)
    finally:
        broker.close()


@pytest.fixture(scope="module")
def secured_run(
    secure_broker: SecureBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredRun]:
    """The service decides what ``fraud-simulate`` publishes, both connected only through SASL_SSL."""
    directory = tmp_path_factory.mktemp("secured-run")
    topics = ServiceTopics()
    topics.create_inputs(secure_broker.plaintext, partitions=3)
    env = secure_broker.client_env()
    pseudonym_key = secrets.token_hex(16)
    service = ServiceProcess(
        topics.env(env["KAFKA_BOOTSTRAP_SERVERS"], **env, FRAUD_PSEUDONYM_KEY=pseudonym_key),
        directory / "service.log",
    )
    try:
        assert _wait_for_topic(service, topics), "the service did not start over SASL_SSL"
        truth = directory / "truth.jsonl"
        simulate = _simulate(env, directory, topics, "--truth-file", str(truth))
        assert simulate.returncode == 0, simulate.stderr[-3000:]
        audit = CommittedReader(secure_broker.plaintext, topics.audit)
        wait_until(lambda: decided(audit) >= TRANSACTIONS, 120, "a decision for every transaction")
    finally:
        code = service.stop()
    assert code == 0
    audit.drain_to_end()
    with AuditReader(client_config(environ=env), topics.audit) as reader:
        audit_bytes = [part for m in reader.messages() for part in (m.key, m.value) if part is not None]
    records = (orjson.loads(line) for line in truth.read_bytes().splitlines())
    customers = {record["transaction_id"]: record["customer_id"] for record in records}
    yield SecuredRun(customers, audit, audit_bytes, pseudonym_key)
    audit.close()


def test_service_decides_a_stream_published_over_sasl_ssl(secured_run: SecuredRun) -> None:
    decisions = audit_decisions(secured_run.audit)
    assert len(secured_run.customers) == TRANSACTIONS
    assert decisions == Counter(list(secured_run.customers)), "every simulated transaction decided once"
    print(
        f"\n{TRANSACTIONS} transactions published by fraud-simulate and decided by the service, both over"
        f" {LISTENER} (PLAIN); {len(secured_run.audit_bytes):,} audit keys and values read back over it"
    )


def test_audit_carries_stable_pseudonyms_and_no_raw_customer_id(secured_run: SecuredRun) -> None:
    key = secured_run.pseudonym_key.encode()
    tokens: defaultdict[str, set[str]] = defaultdict(set)
    for records in secured_run.audit.records.values():
        for _, value, _ in records:
            record = orjson.loads(value)
            if record["record_type"] == "decision":
                tokens[secured_run.customers[record["transaction_id"]]].add(record["customer_id"])
    cards = set(secured_run.customers.values())
    assert set(tokens) == cards
    assert all(found == {pseudonymise(card, key)} for card, found in tokens.items()), "one token per card"
    assert len({token for found in tokens.values() for token in found}) == len(cards), "distinct cards"
    assert max(Counter(secured_run.customers.values()).values()) > 1, "some card paid more than once"
    leaked = {card for card in cards for part in secured_run.audit_bytes if card.encode() in part}
    assert not leaked, f"raw customer ids in the audit topic: {sorted(leaked)[:5]}"
    print(f"\n{len(cards)} cards, each with one keyed token in the audit; no raw id in its bytes")


def test_detector_with_a_wrong_password_fails_fast_and_says_why(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    env = secure_broker.client_env(password="not-the-password")
    service = ServiceProcess(
        ServiceTopics().env(env["KAFKA_BOOTSTRAP_SERVERS"], **env), tmp_path / "service.log"
    )
    try:
        wait_until(lambda: bool(service.log_events("starting")) or not service.alive(), 120, "the start")
        code = service.process.wait(FAIL_FAST_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the detector was still running {FAIL_FAST_S:.0f} s after its login was refused")
    finally:
        if service.alive():
            service.kill()
        else:
            service.stop()
    output = service.log_path.read_text(errors="replace")
    print(f"\ndetector exit code {code}; its last lines:\n{_own_lines(output)[-3:]}")
    assert code != 0
    assert "Traceback" not in output, "an expected failure must be reported, not crash"
    assert _names_authentication(output)


def test_simulator_with_a_wrong_password_fails_fast_and_says_why(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    env = secure_broker.client_env(password="not-the-password")
    try:
        done = _simulate(env, tmp_path, ServiceTopics(), timeout=SIMULATOR_FAIL_FAST_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"fraud-simulate was still running {SIMULATOR_FAIL_FAST_S:.0f} s after its login was refused"
        )
    print(f"\nfraud-simulate exit code {done.returncode}; its last lines:\n{_own_lines(done.stderr)[-3:]}")
    assert done.returncode != 0
    assert _names_authentication(done.stderr)


def _simulate(
    env: dict[str, str], directory: Path, topics: ServiceTopics, *args: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``fraud-simulate`` as a deployment runs it: Kafka settings from the environment only."""
    config = directory / "simulation.json"
    config.write_bytes(orjson.dumps(SIMULATION))
    command = [sys.executable, "-m", "producers.simulate_cli", "--config", str(config), "--quiet"]
    command += ["--seed", "4", "--transactions", str(TRANSACTIONS)]
    command += ["--transactions-topic", topics.transactions, "--labels-topic", topics.labels, *args]
    # subprocess.run kills the child when the timeout expires.
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


def _own_lines(output: str) -> list[str]:
    """The program's own output, without librdkafka's raw log lines (they start with '%')."""
    return [line for line in output.splitlines() if line and not line.startswith("%")]


def _names_authentication(output: str) -> bool:
    return any("authentication" in line.lower() for line in _own_lines(output))
