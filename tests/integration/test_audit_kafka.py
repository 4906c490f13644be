"""The audit commands against a real broker, on an audit topic written as the detector writes it.

The records come from the real engine scoring a small simulated stream (three partitions, each its
own engine and chain), sealed with an HMAC key and produced in Kafka transactions, with one aborted
transaction whose records a ``read_committed`` reader must never see. Tampered copies of the topic
are made with the helpers of the in-memory verification tests.
"""

from __future__ import annotations

import argparse
import io
import math
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from contextlib import redirect_stdout
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from detector.audit.chain import ChainState, encode
from detector.audit.cli import register
from detector.audit.reader import TopicReader
from detector.audit.records import Provenance, WrittenSchema, decision_record, event_record
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.records import Label, format_timestamp, parse_timestamp
from producers.config import preset
from producers.labels import DelayDistribution
from producers.simulator import SimulatedTransaction, simulate
from tests.unit.test_audit_verify import KEY, TAMPERINGS, tampered

PARTITIONS = 3
KEY_ENV = "AUDIT_TEST_CHAIN_KEY"
TOPIC_CONFIG = {"retention.ms": "-1"}  # as the audit topic: kept forever
AT = 150  # where a copy is tampered with, in partition 1: after a commit marker
BATCH = 100  # records of a partition per Kafka transaction


@dataclass(frozen=True)
class AuditTrail:
    """What the detector would have written: sealed records per partition, and the labels."""

    records: dict[int, list[dict]]
    labels: list[Label]

    def all_records(self) -> list[dict]:
        return [r for p in sorted(self.records) for r in self.records[p]]


@cache
def audit_trail() -> AuditTrail:
    """A 5-day simulated stream through one engine per partition, as the service partitions it.

    Small, with fast labels and sensitive drift settings, so that it has alerts, drift and a model swap.
    """
    base = preset("default")
    simulation = replace(
        base,
        days=5,
        fraud_rate=0.05,
        population=replace(base.population, cards=300, terminals=30),
        labels=replace(
            base.labels, fraud_delay=DelayDistribution(6 * 3600.0), legit_delay=DelayDistribution(12 * 3600.0)
        ),
    )
    config = EngineConfig.from_dict(
        {
            "policy": {"review_threshold": 0.3, "block_threshold": 0.7},
            "drift": {
                "warmup_labels": 100,
                "min_background_labels": 200,
                "score_drift_delta": 0.01,
                "min_background_frauds": 3,
            },
        }
    )
    engines = [DetectionEngine(config) for _ in range(PARTITIONS)]
    chains = [ChainState(partition=p, key=KEY) for p in range(PARTITIONS)]
    schemas = [WrittenSchema() for _ in range(PARTITIONS)]
    records: dict[int, list[dict]] = {p: [] for p in range(PARTITIONS)}
    labels: list[Label] = []
    for offset, item in enumerate(simulate(simulation)):
        customer = (
            item.transaction.customer_id if isinstance(item, SimulatedTransaction) else item.customer_id
        )
        p = zlib.crc32(customer.encode()) % PARTITIONS
        engine, provenance = engines[p], Provenance("transactions", p, offset, "instance-1")
        outputs = []
        if isinstance(item, SimulatedTransaction):
            decision = engine.process_transaction(item.transaction)
            schema = schemas[p].record_if_new(decision.features, provenance.instance_id)
            outputs.extend([schema] if schema is not None else [])
            record = decision_record(decision, schemas[p].schema_id, provenance, 0.1 + (offset % 50) / 20)
            outputs.append(record)
        else:
            engine.process_label(item)
            labels.append(item)
        outputs[:0] = [event_record(e, config.model.settled_kind, provenance) for e in engine.pop_events()]
        records[p].extend(chains[p].seal(r) for r in outputs)
    return AuditTrail(records, labels)


def produce_in_transactions(bootstrap: str, topic: str, partitions: dict[int, list[bytes]]) -> None:
    """Each partition's values in order, ``BATCH`` per transaction, all partitions in each transaction."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"audit-test-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    longest = max(len(v) for v in partitions.values())
    for start in range(0, longest, BATCH):
        producer.begin_transaction()
        for p, values in partitions.items():
            for value in values[start : start + BATCH]:
                producer.produce(topic, value, key=b"k", partition=p)
        producer.commit_transaction(30)


@dataclass(frozen=True)
class WrittenAudit:
    topic: str
    halves: dict[int, int]  # partition -> records written before the aborted transaction
    second_half_ms: int  # Kafka time after the first half and before the second


def write_audit_topic(bootstrap: str, topic: str, trail: AuditTrail) -> WrittenAudit:
    """The trail in committed transactions, plus an aborted one in the middle of every partition.

    Kafka stamps records (and transaction markers) when written, as for the detector's audit.
    """
    half = {p: len(r) // 2 for p, r in trail.records.items()}
    produce_in_transactions(
        bootstrap, topic, {p: [encode(r) for r in rs[: half[p]]] for p, rs in trail.records.items()}
    )
    time.sleep(0.005)
    boundary_ms = math.ceil(1000 * time.time())
    time.sleep(0.005)

    # A batch the detector sealed and then aborted: same seqs as what follows, never committed.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"audit-abort-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for p, records in trail.records.items():
        ghost_chain = ChainState.after(records[half[p] - 1], KEY)
        for n in range(5):
            ghost = ghost_chain.seal({**records[half[p]], "transaction_id": f"ghost-{p}-{n}"})
            producer.produce(topic, encode(ghost), key=b"k", partition=p)
    producer.flush(30)
    producer.abort_transaction(30)
    produce_in_transactions(
        bootstrap, topic, {p: [encode(r) for r in rs[half[p] :]] for p, rs in trail.records.items()}
    )
    return WrittenAudit(topic, half, boundary_ms)


def run_audit(argv: list[str]) -> tuple[int, str]:
    """Exit code and standard output of ``fraud-detector audit ARGV --quiet``."""
    parser = argparse.ArgumentParser(prog="fraud-detector")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv, "--quiet"])
    out = io.StringIO()
    with redirect_stdout(out):
        code = args.func(args)
    return code, out.getvalue()


def lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def by_partition(records: Iterable[dict]) -> dict[int, list[str]]:
    """Each partition's records in order, as their hashes."""
    grouped: dict[int, list[str]] = {}
    for record in records:
        grouped.setdefault(record["chain"]["partition"], []).append(record["chain"]["hash"])
    return grouped


def daily_tables(page: str) -> str:
    """The page from the daily metrics to the score distribution: the numbers that depend on labels."""
    return page[page.index("<h2>Daily") : page.index("<h2>Processing")]


@pytest.fixture
def audit_topic(kafka_bootstrap: str, make_topic: Callable[..., str]) -> WrittenAudit:
    return write_audit_topic(kafka_bootstrap, make_topic("audit", PARTITIONS, TOPIC_CONFIG), audit_trail())


def test_replay_selects_committed_records_by_each_filter(
    kafka_bootstrap: str, audit_topic: WrittenAudit, tmp_path: Path
) -> None:
    trail = audit_trail()
    expected = trail.all_records()
    common = ["--bootstrap-servers", kafka_bootstrap, "--topic", audit_topic.topic]

    def replayed(*filters: str, name: str = "out.jsonl") -> Path:
        path = tmp_path / name
        assert run_audit(["replay", *common, "--output", str(path), *filters])[0] == 0
        return path

    everything = lines(replayed())
    assert by_partition(everything) == by_partition(expected)  # all, in order, no aborted ghost
    assert not [r for r in everything if r.get("transaction_id", "").startswith("ghost")]

    customer = next(r["customer_id"] for r in expected if r.get("decision") in ("review", "block"))
    alerts = lines(replayed("--customer", customer, "--decision", "review", "--decision", "block"))
    wanted = [
        r for r in expected if r.get("customer_id") == customer and r.get("decision") in ("review", "block")
    ]
    # Each selected decision comes with the feature schema it names, written once before it.
    assert alerts[0]["record_type"] == "feature_schema"
    assert by_partition(r for r in alerts if r["record_type"] == "decision") == by_partition(wanted)

    kinds = {r["record_type"] for r in expected} - {"decision", "feature_schema"}
    assert kinds, "the engine emitted no events: the small config no longer exercises them"
    events = lines(replayed(*[arg for kind in sorted(kinds) for arg in ("--record-type", kind)]))
    assert by_partition(events) == by_partition(r for r in expected if r["record_type"] in kinds)

    one = next(r for r in expected if r["record_type"] == "decision" and r["decision"] == "block")
    single = lines(
        replayed("--transaction-id", one["transaction_id"], "--generation", str(one["model"]["generation"]))
    )
    assert single[1:] == [one] and single[0]["feature_schema"] == one["feature_schema"]

    since, until = "2026-01-02T00:00:00Z", "2026-01-02T12:00:00Z"
    rows = replayed("--since", since, "--until", until, name="window.csv").read_text().splitlines()
    in_window = [
        r
        for r in expected
        if "event_time" in r  # not a feature schema
        and parse_timestamp(since) <= parse_timestamp(r["event_time"]) < parse_timestamp(until)
    ]
    assert len(rows) == 1 + len(in_window) > 100  # a header, then one row a record

    later = lines(replayed("--start-time", format_timestamp(audit_topic.second_half_ms / 1000)))
    second_half = [r for p, records in trail.records.items() for r in records[audit_topic.halves[p] :]]
    assert by_partition(later) == by_partition(second_half)


def test_verify_passes_then_pinpoints_each_tampering_in_a_copy(
    kafka_bootstrap: str,
    audit_topic: WrittenAudit,
    make_topic: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    trail = audit_trail()
    common = ["--bootstrap-servers", kafka_bootstrap, "--hmac-key-env", KEY_ENV]
    heads = tmp_path / "heads.json"
    code, out = run_audit(["verify", *common, "--topic", audit_topic.topic, "--save-head", str(heads)])
    assert code == 0, out
    for p, records in trail.records.items():
        assert f"partition {p}: {len(records)} records verified" in out
    assert f"total: {sum(map(len, trail.records.values()))} records verified in 3 partitions" in out

    original = {p: [encode(r) for r in records] for p, records in trail.records.items()}
    for how, problem in sorted(TAMPERINGS.items()):
        copy = make_topic(f"audit-{how}", PARTITIONS, TOPIC_CONFIG)
        produce_in_transactions(kafka_bootstrap, copy, {**original, 1: tampered(original[1], how, AT, KEY)})
        with TopicReader({"bootstrap.servers": kafka_bootstrap}, copy) as reader:
            offsets = [m.offset for m in reader.messages() if m.partition == 1]
        assert offsets[AT] > AT  # transaction markers took offsets: offset and seq differ
        code, out = run_audit(["verify", *common, "--topic", copy])
        assert code == 1
        assert f"BROKEN partition 1, offset {offsets[AT]}, seq {AT}: {problem}: " in out, (how, out)
        assert out.count("BROKEN") == 1

    truncated = make_topic("audit-truncated", PARTITIONS, TOPIC_CONFIG)
    produce_in_transactions(kafka_bootstrap, truncated, {**original, 2: original[2][:-3]})
    assert run_audit(["verify", *common, "--topic", truncated])[0] == 0  # alone, a shorter chain is valid
    code, out = run_audit(["verify", *common, "--topic", truncated, "--head", str(heads)])
    assert code == 1
    assert f"BROKEN partition 2, after the last record, seq {len(original[2]) - 3}: truncated" in out


def test_report_from_the_audit_and_labels_topics(
    kafka_bootstrap: str, audit_topic: WrittenAudit, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    trail = audit_trail()
    labels_topic = make_topic("labels", PARTITIONS, TOPIC_CONFIG)
    produce_in_transactions(
        kafka_bootstrap,
        labels_topic,
        {p: [label.to_json() for label in trail.labels[p::PARTITIONS]] for p in range(PARTITIONS)},
    )
    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_bytes(b"".join(label.to_json() + b"\n" for label in trail.labels))
    common = ["--bootstrap-servers", kafka_bootstrap, "--topic", audit_topic.topic]
    for source, out in ((["--labels-topic", labels_topic], "a"), (["--labels-file", str(labels_file)], "b")):
        code, said = run_audit(["report", *common, *source, "--out", str(tmp_path / out)])
        assert (code, said) == (0, f"report written to {tmp_path / out / 'report.html'}\n")

    from_topic = (tmp_path / "a" / "report.html").read_text()
    from_file = (tmp_path / "b" / "report.html").read_text()
    decisions = sum(r["record_type"] == "decision" for r in trail.all_records())
    assert f"<td>decisions</td><td>{decisions:,}</td>" in from_topic
    assert f"<td>labels read</td><td>{len({label.transaction_id for label in trail.labels}):,}" in from_topic
    assert daily_tables(from_topic) == daily_tables(from_file)
    assert "is not a latency" in from_topic  # simulated event times are months before the writes
    for name in ("timeline.png", "scores.png", "latency.png"):
        assert (tmp_path / "a" / name).stat().st_size > 10_000
