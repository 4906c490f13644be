"""fraud-simulate against a real broker: everything delivered is there, once, keyed by customer."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from detector.engine.records import decode_label, decode_transaction
from devkit.reading import CommittedReader
from producers import replay_cli, simulate_cli

SMALL = {"days": 3, "population": {"cards": 300, "terminals": 40}, "fraud_rate": 0.05}


def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of every committed message up to the current end of ``topic``."""
    with CommittedReader(bootstrap, topic, keep=lambda m: (m.partition(), m.key(), m.value())) as reader:
        reader.drain_to_end()
    return [record for records in reader.records.values() for record in records]


@pytest.mark.kafka
def test_simulated_stream_read_back_equals_what_was_delivered(
    kafka_bootstrap: str, make_topic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transactions_topic, labels_topic = make_topic("tx"), make_topic("labels")
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    argv = [
        *("--config", str(config), "--bootstrap-servers", kafka_bootstrap),
        *("--transactions-topic", transactions_topic, "--labels-topic", labels_topic, "--quiet"),
    ]
    assert simulate_cli.main(argv) == 0
    summary = {  # the counts; elapsed time and rate are the lines that are not integers
        key.strip(): int(value)
        for key, value in (line.split(":", 1) for line in capsys.readouterr().out.splitlines())
        if value.strip().isdigit()
    }
    assert summary["failed"] == 0
    assert summary["delivered transactions"] == summary["transactions"] > 1000
    assert summary["delivered labels"] == summary["labels"] > 1000

    transactions = read_all(kafka_bootstrap, transactions_topic)
    labels = read_all(kafka_bootstrap, labels_topic)
    assert len(transactions) == summary["delivered transactions"]
    assert len(labels) == summary["delivered labels"]

    partition_of_customer: dict[bytes, int] = {}
    decoded = [decode_transaction(value) for _, _, value in transactions]
    assert len({tx.transaction_id for tx in decoded}) == len(decoded)  # no duplicates
    for (partition, key, _), tx in zip(transactions, decoded, strict=True):
        assert key == tx.customer_id.encode()
        assert partition_of_customer.setdefault(key, partition) == partition
    for partition, key, value in labels:
        label = decode_label(value)
        assert key == label.customer_id.encode()
        # same key, same partition count: a customer's labels are on the partition of its transactions
        assert partition_of_customer[key] == partition
    # each partition keeps the event-time order the simulator produced
    for partition in set(partition_of_customer.values()):
        times = [tx.event_time for (p, _, _), tx in zip(transactions, decoded, strict=True) if p == partition]
        assert times == sorted(times)


@pytest.mark.kafka
def test_replay_creates_missing_inputs_with_the_service_partition_count(
    kafka_admin: AdminClient, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the broker's auto-created single partition: the detector's FRAUD_TOPIC_PARTITIONS."""
    config = tmp_path / "small.json"
    config.write_text(json.dumps({**SMALL, "days": 1}))
    assert (
        simulate_cli.main(["--config", str(config), "--output", "jsonl", "--output-dir", str(tmp_path)]) == 0
    )
    topics = [f"replayed-{name}-{uuid.uuid4().hex[:8]}" for name in ("tx", "labels")]
    monkeypatch.setenv("FRAUD_TOPIC_PARTITIONS", "4")
    argv = [str(tmp_path / "transactions.jsonl"), "--labels", str(tmp_path / "labels.jsonl")]
    argv += [
        "--bootstrap-servers",
        kafka_bootstrap,
        "--transactions-topic",
        topics[0],
        "--labels-topic",
        topics[1],
    ]
    try:
        assert replay_cli.main([*argv, "--quiet"]) == 0
        listed = kafka_admin.list_topics(timeout=30).topics
        assert [len(listed[name].partitions) for name in topics] == [4, 4]
    finally:
        for future in kafka_admin.delete_topics(topics, operation_timeout=30).values():
            future.result(timeout=60)
