"""fraud-simulate against a real broker: everything delivered is there, once, keyed by customer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.engine.records import decode_label, decode_transaction
from devkit.reading import CommittedReader
from producers import simulate_cli

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
    summary = {
        key.strip(): int(value)
        for key, value in (line.split(":", 1) for line in capsys.readouterr().out.splitlines())
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
