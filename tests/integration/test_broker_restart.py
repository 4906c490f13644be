"""The broker goes away mid-run and comes back: the service is unready meanwhile and loses nothing.

The process recovers by itself: readiness goes false during the outage, then true again, without
a restart. If the broker vanished while ``send_offsets_to_transaction`` waited on the group
coordinator, that call can stay blocked past its timeout (confluentinc/librdkafka#5456); the
service abandons it after 15 s (:mod:`detector.service.deadline`), which the log shows.
"""

from __future__ import annotations

import time
from pathlib import Path

from detector.engine.records import Transaction
from devbroker import LocalKafka
from devkit.ports import free_port, http_status
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import CommittedReader
from tests.integration.service_harness import ServiceTopics, audit_decisions, non_json_lines, wait_until
from tests.integration.test_service import decided, simulated

RECOVERY_GRACE_S = 120.0  # a wedged commit is abandoned after 15 s; then reconnecting backs off up to 10 s


def test_a_broker_restart_mid_run_keeps_exactly_one_decision_per_transaction(
    local_kafka: LocalKafka, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items = simulated(8_000, seed=11)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    publish(topics.settings(kafka_bootstrap), items)
    port = free_port()
    readiness = f"http://127.0.0.1:{port}/readyz"
    env = topics.env(kafka_bootstrap, FRAUD_METRICS_PORT=str(port), FRAUD_BATCH_SIZE="100")
    log = tmp_path / "service.log"
    service = ServiceProcess(env, log)
    try:
        wait_until(lambda: http_status(readiness) == 200, 90, "readiness")
        audit = CommittedReader(kafka_bootstrap, topics.audit)
        wait_until(lambda: decided(audit) >= 1_000, 120, "the first decisions")
        audit.close()

        local_kafka.stop()
        outage_started = time.monotonic()
        wait_until(lambda: http_status(readiness) == 503, 60, "unreadiness while the broker is down")
        unready_after = time.monotonic() - outage_started
        assert service.alive(), "the service must wait for the broker, not crash"
        local_kafka.start()
        restarted = time.monotonic()
        wait_until(lambda: http_status(readiness) == 200, RECOVERY_GRACE_S, "readiness after the restart")
        ready_after = time.monotonic() - restarted
        abandoned = "did not return within" in log.read_text()

        audit = CommittedReader(kafka_bootstrap, topics.audit)
        wait_until(lambda: decided(audit) >= n_transactions, 180, "every decision after the outage")
    finally:
        exit_code = service.stop()
    assert exit_code == 0
    # librdkafka's own lines (hundreds in an outage) come through structlog, as JSON like the rest.
    assert not non_json_lines(log), non_json_lines(log)[:5]
    assert service.log_events("kafka_client_log"), "librdkafka logged nothing through structlog"
    audit.drain_to_end()
    decisions = audit_decisions(audit)
    assert len(decisions) == n_transactions and set(decisions.values()) == {1}
    print(
        f"\nbroker stopped after 1,000+ decisions; unready {unready_after:.1f} s into the outage;"
        f" ready again {ready_after:.1f} s after the broker restarted, in the same process"
        f" (a wedged commit abandoned: {abandoned}); {len(decisions):,} decisions, each once"
    )
