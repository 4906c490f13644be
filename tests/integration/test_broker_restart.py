"""The broker goes away mid-run and comes back: the service is unready meanwhile and loses nothing.

If the broker vanishes while ``send_offsets_to_transaction`` is waiting on the group coordinator,
librdkafka ignores that call's timeout (confluentinc/librdkafka#5456, fix pending) and the loop stays
blocked after the broker is back. The heartbeat then stops, ``/healthz`` fails, and the orchestrator
restarts the process, which recovers from committed state. The test does what the orchestrator
does in that case and reports which path was taken; either way the guarantees checked are the same.
"""

from __future__ import annotations

import time
from pathlib import Path

from detector.engine.records import Transaction
from devbroker import LocalKafka
from tests.integration.service_harness import (
    ServiceProcess,
    ServiceTopics,
    TopicReader,
    audit_decisions,
    free_port,
    http_status,
    publish,
    wait_until,
)
from tests.integration.test_service import decided, simulated

RECOVERY_GRACE_S = 45.0  # after this without readiness, the process counts as wedged and is restarted


def test_a_broker_restart_mid_run_keeps_exactly_one_decision_per_transaction(
    local_kafka: LocalKafka, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items = simulated(8_000, seed=11)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    publish(kafka_bootstrap, topics, items)
    port = free_port()
    readiness = f"http://127.0.0.1:{port}/readyz"
    env = topics.env(kafka_bootstrap, FRAUD_METRICS_PORT=str(port), FRAUD_BATCH_SIZE="100")
    log = tmp_path / "service.log"
    service = ServiceProcess(env, log)
    try:
        wait_until(lambda: http_status(readiness) == 200, 90, "readiness")
        audit = TopicReader(kafka_bootstrap, topics.audit)
        wait_until(lambda: decided(audit) >= 1_000, 120, "the first decisions")
        audit.close()

        local_kafka.stop()
        outage_started = time.monotonic()
        wait_until(lambda: http_status(readiness) == 503, 60, "unreadiness while the broker is down")
        unready_after = time.monotonic() - outage_started
        assert service.alive(), "the service must wait for the broker, not crash"
        local_kafka.start()
        try:
            wait_until(lambda: http_status(readiness) == 200, RECOVERY_GRACE_S, "readiness after the restart")
            path = "recovered in process"
        except AssertionError:
            service.kill()  # wedged in librdkafka: what a liveness probe leads to
            service = ServiceProcess(env, log)
            wait_until(lambda: http_status(readiness) == 200, 90, "readiness of the restarted process")
            path = "wedged in send_offsets_to_transaction; restarted like a liveness probe would"

        audit = TopicReader(kafka_bootstrap, topics.audit)
        wait_until(lambda: decided(audit) >= n_transactions, 180, "every decision after the outage")
    finally:
        exit_code = service.stop()
    assert exit_code == 0
    audit.drain(2.0)
    decisions = audit_decisions(audit)
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}
    print(
        f"\nbroker stopped after 1,000+ decisions; unready {unready_after:.1f} s into the outage; {path};"
        f" {len(decisions):,} decisions, each once, chains intact"
    )
