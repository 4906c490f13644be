"""Service metrics count what committed, once: aborted batches and replays are not decisions."""

from __future__ import annotations

import platform
import time
import urllib.error
import urllib.request
from importlib.metadata import version

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from detector.audit.chain import ChainState
from detector.engine.engine import DetectionEngine
from detector.engine.policy import OUTCOMES
from detector.engine.records import Label, Transaction
from detector.service import metrics as metrics_module
from detector.service.health import HealthServer
from detector.service.metrics import DEAD_LETTER_REASONS, ServiceMetrics
from detector.service.metrics_page import MetricsPage
from detector.service.partition import PartitionProcessor
from detector.service.topic_map import LABELS, TRANSACTIONS, TopicMap

T0 = 1_700_000_000.0


def new_processor(engine: DetectionEngine | None = None, **kwargs: object) -> PartitionProcessor:
    return PartitionProcessor(
        partition=1,
        engine=engine or DetectionEngine(),
        chain=ChainState(partition=1),
        instance_id="test",
        topics=TopicMap({TRANSACTIONS: "tx", LABELS: "labels"}),
        **kwargs,  # type: ignore[arg-type]
    )


def feed(
    metrics: ServiceMetrics, processor: PartitionProcessor, role: str, offset: int, value: bytes
) -> None:
    """What the service loop does with one consumed record."""
    outputs = processor.process(role, offset, b"card", value)
    message = Message(
        topic=role, partition=1, offset=offset, value=value, timestamp=(TIMESTAMP_CREATE_TIME, 1_000)
    )
    metrics.consumed_record(role, message, emitted=bool(outputs))


def tx(i: int) -> bytes:
    return Transaction(f"t{i}", T0 + 60 * i, "card", "m", 10.0).to_json()


def label(i: int) -> bytes:
    return Label(f"t{i}", "card", False, T0 + 60 * i + 30).to_json()


def page(metrics: ServiceMetrics) -> MetricsPage:
    return MetricsPage(tuple(sample for family in metrics.registry.collect() for sample in family.samples))


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return page(metrics).total(name, **labels)


def test_only_committed_records_count_and_an_aborted_batch_counts_when_processed_again() -> None:
    metrics = ServiceMetrics()
    processor = new_processor()
    metrics.began()
    for i in range(3):
        feed(metrics, processor, TRANSACTIONS, i, tx(i))
    feed(metrics, processor, LABELS, 0, label(0))
    feed(metrics, processor, TRANSACTIONS, 3, b"{broken")
    metrics.committed({1: processor}, 0.0)
    assert value(metrics, "fraud_decisions_total", outcome="approve", partition="1") == 3
    assert value(metrics, "fraud_dead_letters_total", reason="bad_json", partition="1") == 1
    assert value(metrics, "fraud_records_consumed_total", input=TRANSACTIONS, partition="1") == 4
    assert value(metrics, "fraud_labels_received_total", partition="1") == 1
    assert value(metrics, "fraud_end_to_end_latency_seconds_count") == 4

    metrics.began()
    feed(metrics, processor, TRANSACTIONS, 4, tx(4))
    metrics.aborted()
    recovered = new_processor()  # the service rebuilds the processor from committed state
    metrics.began()
    feed(metrics, recovered, TRANSACTIONS, 4, tx(4))
    metrics.committed({1: recovered}, 0.0)
    assert value(metrics, "fraud_decisions_total", outcome="approve", partition="1") == 4
    assert value(metrics, "fraud_records_consumed_total", input=TRANSACTIONS, partition="1") == 5
    assert value(metrics, "fraud_kafka_transactions_total", result="aborted") == 1


def test_replayed_records_are_not_decisions_and_engine_totals_are_the_engines_own() -> None:
    metrics = ServiceMetrics()
    before = new_processor()
    for i in range(4):
        before.process(TRANSACTIONS, i, b"card", tx(i))
    assert isinstance(before.engine, DetectionEngine)
    snapshot = before.engine.snapshot()  # a checkpoint at offset 4; offsets 4..5 were committed later
    restarted = new_processor(DetectionEngine.restore(snapshot), replay_until={TRANSACTIONS: 6})
    metrics.began()
    for i in range(4, 8):
        feed(metrics, restarted, TRANSACTIONS, i, tx(i))
    feed(metrics, restarted, LABELS, 0, label(1))
    metrics.committed({1: restarted}, 0.0)
    assert value(metrics, "fraud_decisions_total", outcome="approve", partition="1") == 2
    assert value(metrics, "fraud_records_replayed_total", partition="1") == 2
    assert value(metrics, "fraud_end_to_end_latency_seconds_count") == 2
    assert value(metrics, "fraud_labels_late_total", partition="1") == 1
    assert value(metrics, "fraud_labels_joined_total", partition="1") == 1
    assert value(metrics, "fraud_engine_state_entries", kind="pending_scores", partition="1") == 7
    assert value(metrics, "fraud_model_generation", partition="1") == 1

    metrics.forget([1])
    reported = {sample.name for sample in page(metrics).samples if sample.labels.get("partition") == "1"}
    assert "fraud_model_generation" not in reported and "fraud_labels_late_total" not in reported
    assert "fraud_decisions_total" in reported  # what this process emitted stays counted


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.mark.parametrize(("age", "ready", "expected"), [(0.0, True, (200, 200)), (500.0, False, (503, 503))])
def test_health_endpoints_answer_from_the_heartbeat_and_the_ready_flag(
    age: float, ready: bool, expected: tuple[int, int]
) -> None:
    metrics = ServiceMetrics()
    server = HealthServer(0, metrics.registry, lambda: time.monotonic() - age, lambda: ready)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert (get(f"{base}/healthz")[0], get(f"{base}/readyz")[0]) == expected
        status, text = get(f"{base}/metrics")
        names = {family.name for family in text_string_to_metric_families(text)}
        assert status == 200 and {"fraud_decisions", "fraud_end_to_end_latency_seconds"} <= names
        assert get(f"{base}/nothing")[0] == 404
    finally:
        server.stop()


def test_the_process_and_the_build_are_described() -> None:
    samples = page(ServiceMetrics()).samples
    names = {sample.name for sample in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} <= names
    (build,) = [sample for sample in samples if sample.name == "fraud_build_info"]
    assert build.value == 1
    assert build.labels == {"version": version("fraud-detector"), "python_version": platform.python_version()}


def test_outcome_series_read_zero_from_the_assignment_and_the_unused_ones_go_with_the_partition() -> None:
    metrics = ServiceMetrics()
    metrics.owned(1, checkpoint_written_at=None)
    decisions = {s.labels["outcome"]: s.value for s in samples_of(metrics, "fraud_decisions_total")}
    dead_letters = {s.labels["reason"]: s.value for s in samples_of(metrics, "fraud_dead_letters_total")}
    assert decisions == dict.fromkeys(OUTCOMES, 0.0)
    assert dead_letters == dict.fromkeys(DEAD_LETTER_REASONS, 0.0)
    assert {"bad_json", "duplicate_transaction", "label_queue_full"} <= set(DEAD_LETTER_REASONS)

    processor = new_processor()
    metrics.began()
    feed(metrics, processor, TRANSACTIONS, 0, b"{broken")
    metrics.committed({1: processor}, 0.0)
    metrics.owned(1, checkpoint_written_at=None)  # recovered after an abort: nothing is reset
    assert value(metrics, "fraud_dead_letters_total", reason="bad_json", partition="1") == 1

    metrics.forget([1])
    assert [s.labels for s in samples_of(metrics, "fraud_dead_letters_total")] == [
        {"reason": "bad_json", "partition": "1"}
    ]
    assert samples_of(metrics, "fraud_decisions_total") == []


def test_checkpoint_age_counts_from_the_last_committed_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    now = T0 + 1_000
    monkeypatch.setattr(metrics_module.time, "time", lambda: now)
    metrics = ServiceMetrics()
    metrics.owned(1, checkpoint_written_at=T0)  # the checkpoint it was restored from
    metrics.owned(2, checkpoint_written_at=None)  # none yet
    assert ages(metrics) == {"1": 1_000.0}
    metrics.began()
    metrics.committed({}, 0.0, checkpoint_times={1: T0 + 990, 2: T0 + 400})
    assert ages(metrics) == {"1": 10.0, "2": 600.0}
    metrics.forget([2])
    assert ages(metrics) == {"1": 10.0}


def samples_of(metrics: ServiceMetrics, name: str) -> list[Sample]:
    return [sample for sample in page(metrics).samples if sample.name == name]


def ages(metrics: ServiceMetrics) -> dict[str, float]:
    return {s.labels["partition"]: s.value for s in samples_of(metrics, "fraud_checkpoint_age_seconds")}
