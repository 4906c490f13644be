"""The service's metrics and health endpoints on the real broker: the counters agree with what was sent."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from detector.engine.policy import OUTCOMES
from detector.engine.records import Label, Transaction
from detector.service.metrics import DEAD_LETTER_REASONS
from detector.service.metrics_page import MetricsPage, scrape
from devkit.ports import free_port, http_status
from devkit.process import ServiceProcess
from devkit.publishing import publish
from tests.integration.service_harness import ServiceTopics, wait_until
from tests.integration.test_service import simulated

pytestmark = pytest.mark.kafka
LABEL_COUNTERS = ("joined", "unknown", "duplicate", "invalid")
PARTITIONS = {"0", "1", "2"}
PROCESS_SERIES = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")


def group_holder(bootstrap: str, topics: ServiceTopics) -> Consumer:
    """A member of the service's group with another assignment strategy: until it leaves, the
    coordinator refuses the service's join, so the service stays unassigned (and must be unready)."""
    holder = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topics.env(bootstrap)["FRAUD_GROUP_ID"],
            "partition.assignment.strategy": "roundrobin",
        }
    )
    holder.subscribe([topics.transactions])
    wait_until(lambda: (holder.poll(0.2), bool(holder.assignment()))[1], 60, "the holder's assignment")
    return holder


def refused_join(service: ServiceProcess) -> bool:
    return any(
        "INCONSISTENT_GROUP_PROTOCOL" in event["error"] for event in service.log_events("consume_error")
    )


def stream_with_odd_input() -> tuple[list, int, dict[str, int], int]:
    """(items, valid transactions, poison by expected reason, labels) for a short simulated stream."""
    items: list = simulated(3_000, seed=11)
    valid = [item for item in items if isinstance(item, Transaction)]
    labels = [item for item in items[:1_000] if isinstance(item, Label)]
    early = valid[20]
    odd_labels = [
        Label("never-scored", early.customer_id, False, early.event_time + 1),
        labels[0],  # the same label twice
    ]
    poison = [
        (b"k1", b"{not json"),
        (b"k2", orjson.dumps({"transaction_id": "p-missing", "customer_id": "c"})),
        (None, None),
        (early.customer_id.encode(), early.to_json()),  # a transaction id already scored
    ]
    reasons = {"bad_json": 1, "missing_field": 1, "empty_payload": 1, "duplicate_transaction": 1}
    mixed = items[:1_000] + odd_labels + poison + items[1_000:]
    n_labels = sum(isinstance(item, Label) for item in mixed)
    return mixed, len(valid), reasons, n_labels


def test_counters_agree_with_what_went_through_and_health_follows_the_lifecycle(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items, n_valid, reasons, n_labels = stream_with_odd_input()
    n_poison = sum(reasons.values())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    holder = group_holder(kafka_bootstrap, topics)
    env = topics.env(kafka_bootstrap, FRAUD_METRICS_PORT=str(port), FRAUD_CHECKPOINT_INTERVAL_S="2")
    service = ServiceProcess(env, tmp_path / "s.log")
    try:
        wait_until(
            lambda: http_status(f"{base}/healthz") == 200 or not service.alive(), 60, "the health server"
        )
        wait_until(lambda: refused_join(service) or not service.alive(), 60, "a refused group join")
        assert http_status(f"{base}/readyz") == 503  # connected and alive, but without partitions
        assert http_status(f"{base}/healthz") == 200
    finally:
        holder.close()
    wait_until(lambda: http_status(f"{base}/readyz") == 200, 60, "readiness once the group is free")
    assert service.log_events("partitions_assigned")
    assert_outcome_series_at_zero(scrape(f"{base}/metrics"))

    publish(topics.settings(kafka_bootstrap), items)
    during = scrape(f"{base}/metrics")
    assert during.total("fraud_decisions_total") <= n_valid
    assert during.total("fraud_records_consumed_total") <= len(items)

    def settled() -> bool:
        page = scrape(f"{base}/metrics")
        counted = page.total("fraud_decisions_total"), page.total("fraud_labels_received_total")
        return counted >= (n_valid, n_labels)

    wait_until(settled, 120, "every record counted")
    wait_until(lambda: scrape(f"{base}/metrics").total("fraud_consumer_lag") == 0, 60, "no lag")
    wait_until(lambda: checkpoint_ages(scrape(f"{base}/metrics")).keys() == PARTITIONS, 60, "checkpoints")
    page = scrape(f"{base}/metrics")
    assert http_status(f"{base}/healthz") == 200 and http_status(f"{base}/readyz") == 200
    assert service.stop() == 0
    assert http_status(f"{base}/healthz") is None  # stopped with the service

    assert page.total("fraud_decisions_total") == n_valid
    assert page.total("fraud_records_consumed_total", input="transactions") == n_valid + n_poison
    assert page.total("fraud_end_to_end_latency_seconds_count") == n_valid + n_poison
    assert {reason: page.total("fraud_dead_letters_total", reason=reason) for reason in reasons} == reasons
    assert page.total("fraud_dead_letters_total") == n_poison
    assert page.total("fraud_records_replayed_total") == 0
    assert_labels_consistent(page, n_labels)
    partitions = {s.labels["partition"] for s in page.samples if s.name == "fraud_model_generation"}
    assert partitions == {"0", "1", "2"}
    assert page.total("fraud_kafka_transactions_total", result="aborted") == 0
    assert all(age >= 0 for age in checkpoint_ages(page).values())
    assert {name for name in PROCESS_SERIES if page.total(name) > 0} == set(PROCESS_SERIES)
    (build,) = [sample for sample in page.samples if sample.name == "fraud_build_info"]
    assert build.value == 1 and build.labels["version"]

    # A restart reports the age of the checkpoints it restored, before writing any of its own.
    restarted_port = free_port()
    restarted = ServiceProcess(
        topics.env(
            kafka_bootstrap, FRAUD_METRICS_PORT=str(restarted_port), FRAUD_CHECKPOINT_INTERVAL_S="3600"
        ),
        tmp_path / "restarted.log",
    )
    with restarted:
        url = f"http://127.0.0.1:{restarted_port}"
        wait_until(lambda: http_status(f"{url}/readyz") == 200 or not restarted.alive(), 120, "the restart")
        assert checkpoint_ages(scrape(f"{url}/metrics")).keys() == PARTITIONS
        assert not restarted.log_events("checkpoint_written")


def assert_outcome_series_at_zero(page: MetricsPage) -> None:
    """Before any input, every outcome and dead-letter reason reads 0 for each owned partition."""
    for name, label, values in (
        ("fraud_decisions_total", "outcome", OUTCOMES),
        ("fraud_dead_letters_total", "reason", DEAD_LETTER_REASONS),
    ):
        series = {(s.labels[label], s.labels["partition"]): s.value for s in page.samples if s.name == name}
        assert series == {(value, partition): 0 for value in values for partition in PARTITIONS}


def checkpoint_ages(page: MetricsPage) -> dict[str, float]:
    return {s.labels["partition"]: s.value for s in page.samples if s.name == "fraud_checkpoint_age_seconds"}


def assert_labels_consistent(page: MetricsPage, n_labels: int) -> None:
    """Every label is queued or late; every applied one is joined, unknown, duplicate or invalid."""
    assert page.total("fraud_records_consumed_total", input="labels") == n_labels
    assert page.total("fraud_labels_received_total") == n_labels
    assert page.total("fraud_labels_queued_total") + page.total("fraud_labels_late_total") == n_labels
    applied = sum(page.total(f"fraud_labels_{name}_total") for name in LABEL_COUNTERS)
    waiting = page.total("fraud_engine_state_entries", kind="queued_labels")
    assert applied + waiting == n_labels
    assert page.total("fraud_labels_unknown_total") == 1
    assert page.total("fraud_labels_duplicate_total") == 1
    assert page.total("fraud_labels_joined_total") > n_labels / 2
