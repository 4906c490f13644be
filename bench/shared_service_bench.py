"""Benchmark: partition invariance of the real service, 1, 3 and 12 input partitions on one 60-day stream.

What: the detector service (exactly-once, audit on) on the same simulated stream (the default
preset: all four fraud scenarios, compromised terminals among them) with 1 input partition (one
process, its own model), 3 partitions (one scorer instance and the learner) and 12 partitions (two
scorer instances and the learner); with ``--baseline``, also 3 and 12 partitions with
``FRAUD_SHARING=local`` (a model per partition, as before shared learning). For each: ROC AUC and
average precision of the audited scores on the last 14 days against the simulator's ground truth,
transactions/s from the start of publishing to the last decision, and CPU seconds per 1,000
transactions summed over every service process (scorers and learner; the broker apart), from
/proc as bench/harness.py reads it.

The learner's ceiling: labels (and scored updates) it applied per CPU-second of its own, in the
3-partition run: the rate one learner could sustain with a core to itself.

    python bench/shared_service_bench.py --cards 300 --epoch 3600
    python bench/shared_service_bench.py --cards 600 --baseline
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Broker, cpu_sample, cpu_used, kafka_broker_process, wait_until_assigned
from report import print_table, write_json

from detector.engine.records import Label, Transaction
from detector.evaluation import average_precision, roc_auc
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import ArrivalReader, CommittedReader
from devkit.settings import settings_env, unique_settings
from devkit.topics import create_input_topics
from devkit.topology import SharedTopology
from producers.config import preset
from producers.simulator import SimulatedTransaction, simulate

DAY = 86400.0


def stream(
    days: float, cards: int, terminals: int, seed: int
) -> tuple[list[Transaction | Label], dict[str, bool]]:
    """The default preset over ``days``: what is published, and the ground truth by transaction id."""
    base = preset("default")
    config = replace(
        base,
        seed=seed,
        days=days,
        population=replace(base.population, cards=cards, terminals=terminals),
    )
    items: list[Transaction | Label] = []
    truth: dict[str, bool] = {}
    for item in simulate(config):
        if isinstance(item, SimulatedTransaction):
            items.append(item.transaction)
            truth[item.transaction.transaction_id] = item.is_fraud
        else:
            items.append(item)
    return items, truth


def quality(broker: Broker, audit_topic: str, truth: dict[str, bool], since: float) -> dict[str, float]:
    """ROC AUC and average precision of the audited scores of transactions at or after ``since``."""
    reader = CommittedReader(broker.bootstrap, audit_topic)
    reader.drain_to_end()
    reader.close()
    labels, scores = [], []
    for records in reader.records.values():
        for _, value, _ in records:
            record = orjson.loads(value)
            if record["record_type"] == "decision" and _seconds(record["event_time"]) >= since:
                labels.append(int(truth[record["transaction_id"]]))
                scores.append(record["score"])
    return {
        "auc": roc_auc(labels, scores),
        "avg_precision": average_precision(labels, scores),
        "frauds": sum(labels),
    }


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def timed_run(
    broker: Broker,
    items: list[Transaction | Label],
    truth: dict[str, bool],
    topology: tuple[int, int, str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One run on fresh topics: ``topology`` is (input partitions, scorer instances, FRAUD_SHARING)."""
    partitions, instances, sharing = topology
    settings = unique_settings(
        broker.bootstrap, sharing=sharing, sharing_idle_s=args.idle, engine_config=args.config
    )
    create_input_topics(settings, partitions)
    env = settings_env(settings)
    log_dir = Path(args.log_dir) / settings.group_id
    n_transactions = len(truth)
    with ExitStack() as stack:
        if sharing == "learner":
            shared = stack.enter_context(SharedTopology(env, log_dir, instances))
            scorers, pids = shared.scorers, shared.pids()
        else:
            scorers = [
                stack.enter_context(
                    ServiceProcess({**env, "FRAUD_INSTANCE_ID": f"s{k}"}, log_dir / f"scorer-{k}.log")
                )
                for k in range(instances)
            ]
            pids = {f"scorer {k + 1}": scorer.pid for k, scorer in enumerate(scorers)}
        wait_until_assigned(scorers, partitions)
        reader = stack.enter_context(ArrivalReader(settings.bootstrap_servers, settings.decisions_topic))
        if broker.pid is not None:
            pids["broker"] = broker.pid
        before = cpu_sample(pids)
        started = time.time()
        publish(settings, items)
        if not reader.wait_for(n_transactions, args.timeout):
            raise RuntimeError(f"only {len(reader.arrived):,} of {n_transactions:,} decisions arrived")
        elapsed = max(reader.arrived.values()) - started
        used = cpu_used(before, cpu_sample(pids))
    services = sum(seconds for name, seconds in used.items() if name.startswith(("scorer", "learner")))
    first = min(item.event_time for item in items if isinstance(item, Transaction))
    last = max(item.event_time for item in items if isinstance(item, Transaction))
    row = {
        "partitions": partitions,
        "instances": instances,
        "sharing": sharing,
        **quality(broker, settings.audit_topic, truth, max(first, last - args.test_days * DAY)),
        "tx/s": n_transactions / elapsed,
        "service cpu s/1k tx": 1000.0 * services / n_transactions,
        "learner cpu s/1k tx": 1000.0 * used.get("learner", 0.0) / n_transactions,
        "broker cpu s/1k tx": 1000.0 * used.get("broker", float("nan")) / n_transactions,
        "others' cores": used["others"] / elapsed,
    }
    if sharing == "learner":
        n_labels = sum(isinstance(item, Label) for item in items)
        row["learner labels/cpu-s"] = n_labels / used["learner"]
        row["learner updates/cpu-s"] = (n_labels + n_transactions) / used["learner"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument(
        "--test-days", type=float, default=14.0, help="the last days, where quality is measured"
    )
    parser.add_argument("--cards", type=int, default=600)
    parser.add_argument(
        "--terminals", type=int, help="(default: a tenth of the cards; 2.5 times them is a terminal a day)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epoch", type=float, default=3600.0, help="sharing epoch, event-time seconds")
    parser.add_argument("--idle", type=float, default=2.0, help="FRAUD_SHARING_IDLE_S")
    parser.add_argument("--baseline", action="store_true", help="also 3 and 12 partitions, a model each")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--log-dir", default="out/bench/logs")
    parser.add_argument("--json", default="out/bench/shared_service.json")
    args = parser.parse_args(argv)
    config_path = Path(args.log_dir) / "shared-engine.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_bytes(orjson.dumps({"sharing": {"epoch": args.epoch}}))
    args.config = str(config_path)

    terminals = args.terminals or max(args.cards // 10, 10)
    items, truth = stream(args.days, args.cards, terminals, args.seed)
    print(
        f"stream: {len(truth):,} transactions ({sum(truth.values())} frauds),"
        f" {len(items) - len(truth):,} labels"
    )
    runs = [(1, 1, "local"), (3, 1, "learner"), (12, 2, "learner")]
    if args.baseline:
        runs += [(3, 1, "local"), (12, 2, "local")]
    rows = []
    with kafka_broker_process() as broker:
        for partitions, instances, sharing in runs:
            rows.append(timed_run(broker, items, truth, (partitions, instances, sharing), args))
            print_table(f"{partitions} partition(s), {instances} instance(s), sharing {sharing}", [rows[-1]])
    base = rows[0]
    for row in rows:
        row["auc / 1-partition"] = row["auc"] / base["auc"]
        row["ap / 1-partition"] = row["avg_precision"] / base["avg_precision"]
        row["cpu / 1-partition"] = row["service cpu s/1k tx"] / base["service cpu s/1k tx"]
    print_table(f"partition invariance, last {args.test_days:g} days, epoch {args.epoch:g} s", rows)
    write_json(
        args.json,
        "shared_service",
        rows,
        cards=args.cards,
        terminals=terminals,
        days=args.days,
        epoch=args.epoch,
        cores=os.cpu_count(),
    )


if __name__ == "__main__":
    main()
