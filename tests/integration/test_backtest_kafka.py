"""The backtest against the real thing: the service's scores, and the producers' partitioner."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from detector.backtest.cli import main as backtest
from detector.backtest.routing import partition_for
from detector.engine.records import Label, Transaction
from detector.service.metrics_page import scrape
from detector.service.topics import wait_for_leaders
from devkit.ports import free_port
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import CommittedReader
from producers.sinks import KafkaSink
from tests.integration.service_harness import ServiceTopics, wait_until
from tests.streams import short_label_stream

pytestmark = pytest.mark.kafka


def write_jsonl(path: Path, records: list[Transaction] | list[Label]) -> Path:
    path.write_bytes(b"".join(record.to_json() + b"\n" for record in records))
    return path


def test_the_backtest_scores_exactly_as_the_service_on_one_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    items = short_label_stream(6_000, seed=11, cards=800, terminals=120)
    transactions = [item for item in items if isinstance(item, Transaction)]
    labels = [item for item in items if isinstance(item, Label)]

    # The service reads labels and transactions in parallel; to give it the backtest's order, it
    # takes every label first (they wait in its label queue until event time passes them), then
    # the transactions.
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=1)
    publish(topics.settings(kafka_bootstrap), labels)
    port = free_port()
    service = ServiceProcess(topics.env(kafka_bootstrap, FRAUD_METRICS_PORT=str(port)), tmp_path / "s.log")
    metrics = f"http://127.0.0.1:{port}/metrics"

    def labels_taken() -> bool:
        try:
            return scrape(metrics).total("fraud_labels_received_total") >= len(labels)
        except OSError:
            return False

    wait_until(labels_taken, 120, "every label consumed")
    publish(topics.settings(kafka_bootstrap), transactions)
    audit = CommittedReader(kafka_bootstrap, topics.audit)

    def decided() -> int:
        audit.drain(0.5)
        return sum(orjson.loads(value)["record_type"] == "decision" for _, value, _ in audit.records[0])

    wait_until(lambda: decided() >= len(transactions), 180, "every decision")
    assert service.stop() == 0
    audit.drain_to_end()
    served = {
        record["transaction_id"]: record
        for record in (orjson.loads(value) for _, value, _ in audit.records[0])
        if record["record_type"] == "decision"
    }

    out = tmp_path / "bt"
    argv = [str(write_jsonl(tmp_path / "tx.jsonl", transactions)), "--labels"]
    argv += [str(write_jsonl(tmp_path / "labels.jsonl", labels)), "--out", str(out), "--quiet"]
    assert backtest(argv) == 0
    lines = (out / "logistic_regression" / "scores.jsonl").read_bytes().splitlines()
    scored = [orjson.loads(line) for line in lines]

    assert len(scored) == len(served) == len(transactions)
    assert any(line["decision"] != "approve" for line in scored)
    for line in scored:
        record = served[line["transaction_id"]]
        assert line["score"] == record["score"], line["transaction_id"]
        assert line["decision"] == record["decision"]
        assert line["reason_codes"] == record["reason_codes"]
        assert line["model_generation"] == record["model"]["generation"]


def test_routing_matches_the_partitions_the_producers_write_to(kafka_bootstrap: str) -> None:
    topic, partitions = f"bt-routing-{uuid.uuid4().hex[:8]}", 7
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    wait_for_leaders(admin, [topic], partitions)
    customers = [f"C{number:05d}" for number in range(300)] + ["ü-card", "x" * 100]
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap}, transactions_topic=topic, labels_topic=topic)
    for number, customer in enumerate(customers):
        sink.send_label(Label(f"t{number}", customer, False, 1.7e9))
    assert sink.close().failed == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"r-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: dict[str, int] = {}
    ended: set[int] = set()
    while len(ended) < partitions:
        message = consumer.poll(10)
        assert message is not None, "the topic was not read to its end"
        partition, key = message.partition(), message.key()
        assert partition is not None
        if message.error() is not None:
            ended.add(partition)
            continue
        assert key is not None
        seen[key.decode()] = partition
    consumer.close()
    assert len(seen) == len(customers)
    assert len(set(seen.values())) == partitions
    assert seen == {key: partition_for(key, partitions) for key in seen}
