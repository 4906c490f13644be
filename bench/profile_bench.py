"""Benchmark 6: where the time goes per transaction, stage by stage, on one stream.

Each stage is timed on its own over the same events, in memory and with no garbage-collector pass
(the service keeps the collector off its state), then the whole per-partition service logic
(``PartitionProcessor``), and finally the full service on the real broker. The Kafka share is the
service time minus the in-memory processor time: consuming, producing, committing transactions,
the collector's passes over each batch, and the broker competing for the same cores.

Stages (microseconds per transaction; label costs are included where labels are processed):

* decode: JSON bytes to typed records, transactions and labels;
* features: the feature extractor's transform and update;
* model: the River pipeline's predict and learn (learning once per label);
* engine: the whole engine (features, model, label join, drift), on decoded records;
* audit encoding: audit record, hash chain, JSON, compact reply;
* hand-off by pickle: what passing the decisions to another process (to encode them there) would
  cost, pickling and unpickling, without the pipe: weighed against audit encoding;
* processor: decode + engine + audit together, as the service runs them, without Kafka; "processor
  / engine" is the in-memory cost of the service's per-record work against the engine alone;
* service: the full service on Kafka (exactly-once, audit), readiness to last commit, after a
  discarded run that warms the broker's JIT.

The in-memory stages are CPU seconds of this process (``time.process_time``), so a shared machine
does not inflate them; the service stage is wall time, readiness to last commit.

    python bench/profile_bench.py --transactions 30000
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    RunningService,
    gc_free_seconds,
    kafka_broker,
    warm_up_broker,
)
from report import print_table, write_json

from detector.audit.chain import ChainState
from detector.audit.records import Provenance, WrittenSchema, decision_record, decision_reply
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.features import FeatureExtractor
from detector.engine.model import FraudModel
from detector.engine.records import Label, Transaction, decode_label, decode_transaction
from detector.engine.terminals import ACTIVITY, TerminalChange, TerminalTable
from detector.service.partition import PartitionProcessor
from detector.service.topic_map import LABELS, TRANSACTIONS, TopicMap
from devkit.publishing import publish
from devkit.settings import unique_settings
from devkit.streams import simulated_stream
from devkit.topics import create_input_topics


def cpu_seconds(action: Callable[[], object]) -> float:
    return gc_free_seconds(action, time.process_time)


def stage_times(items: list[Transaction | Label], config: EngineConfig) -> tuple[dict[str, float], list]:
    """Seconds per stage over the whole stream, and the engine's decisions (for the audit stage)."""
    payloads = [(isinstance(item, Transaction), item.to_json()) for item in items]
    transactions = [item for item in items if isinstance(item, Transaction)]
    labels = {item.transaction_id: item.is_fraud for item in items if isinstance(item, Label)}
    times: dict[str, float] = {}

    times["decode"] = cpu_seconds(
        lambda: [decode_transaction(p) if tx else decode_label(p) for tx, p in payloads]
    )

    extractor, terminals = FeatureExtractor(config.features), TerminalTable(config.features)
    vectors: list[dict[str, float]] = []

    def features() -> None:  # the terminal's payments applied one by one, as the learner would
        for tx in transactions:
            vectors.append(extractor.transform_one(tx, terminals))
            extractor.learn_one(tx)
            terminals.apply([TerminalChange(0, tx.terminal_id, tx.event_time, ACTIVITY, tx.amount)])

    times["features"] = cpu_seconds(features)

    model = FraudModel(config.model)

    def modelling() -> None:
        for tx, x in zip(transactions, vectors, strict=True):
            model.predict_proba_one(x)
            if tx.transaction_id in labels:
                model.learn_one(x, labels[tx.transaction_id])

    times["model"] = cpu_seconds(modelling)

    engine = DetectionEngine(config)
    decisions = []

    def run_engine() -> None:
        for item in items:
            if isinstance(item, Transaction):
                decisions.append(engine.process_transaction(item))
            else:
                engine.process_label(item)
            engine.pop_events()

    times["engine"] = cpu_seconds(run_engine)

    chain = ChainState(partition=0)
    provenance = Provenance("transactions", 0, 0, "bench")

    schema = WrittenSchema()

    def audit() -> None:
        for decision in decisions:
            schema_record = schema.record_if_new(decision.features, "bench")
            if schema_record is not None:
                chain.seal_encoded(schema_record)
            record = decision_record(decision, schema.schema_id, provenance, 0.1)
            chain.seal_sorted(record)  # as the service seals a decision
            orjson.dumps(decision_reply(decision, record["event_time"]))

    times["audit encoding"] = cpu_seconds(audit)
    # What handing the decisions to another process would cost instead (both ends, whole stream).
    times["hand-off by pickle"] = cpu_seconds(lambda: pickle.loads(pickle.dumps(decisions, protocol=5)))

    processor = PartitionProcessor(
        partition=0,
        engine=DetectionEngine(config),
        chain=ChainState(partition=0),
        instance_id="bench",
        topics=TopicMap({TRANSACTIONS: "transactions", LABELS: "labels"}),
    )
    times["processor"] = cpu_seconds(
        lambda: [
            processor.process(TRANSACTIONS if tx else LABELS, offset, None, payload)
            for offset, (tx, payload) in enumerate(payloads)
        ]
    )
    return times, decisions


def service_time(items: list[Transaction | Label], config: EngineConfig) -> float:
    with kafka_broker() as bootstrap:
        warm_up_broker(bootstrap)
        settings = unique_settings(bootstrap, checkpoint_interval_s=60.0)
        create_input_topics(settings, partitions=1)  # one partition: one processor, as in memory
        publish(settings, items)
        with RunningService(settings, config) as running:
            running.wait_ready()
            started = time.perf_counter()
            running.wait_decisions(sum(isinstance(item, Transaction) for item in items))
            return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=30_000)
    parser.add_argument("--cards", type=int, default=5_000)
    parser.add_argument("--no-kafka", action="store_true", help="in-memory stages only")
    parser.add_argument(
        "--repeat", type=int, default=1, help="in-memory stages: the least of this many runs (shared machine)"
    )
    parser.add_argument("--json", default="out/bench/profile.json")
    args = parser.parse_args(argv)

    items = simulated_stream(args.transactions, args.cards)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    config = EngineConfig()
    runs = [stage_times(items, config)[0] for _ in range(args.repeat)]
    times = {stage: min(run[stage] for run in runs) for stage in runs[0]}
    if not args.no_kafka:
        times["service (Kafka)"] = service_time(items, config)
        times["Kafka share"] = times["service (Kafka)"] - times["processor"]
    total = times.get("service (Kafka)", times["processor"])
    rows = [
        {"stage": stage, "us/tx": 1e6 * seconds / n_transactions, "share of total": seconds / total}
        for stage, seconds in times.items()
    ]
    print(f"{n_transactions:,} transactions, {len(items) - n_transactions:,} labels, logistic regression")
    print_table("time per transaction by stage", rows)
    print(f"processor / engine = {times['processor'] / times['engine']:.2f} (goal <= 1.3)")
    write_json(
        args.json,
        "profile",
        rows,
        transactions=n_transactions,
        processor_over_engine=times["processor"] / times["engine"],
    )


if __name__ == "__main__":
    main()
