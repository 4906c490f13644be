"""Benchmark: detection quality and cost as the topology scales out by partitions, in memory.

A simulated 60-day stream (the default preset, which includes the compromised-terminal scenario
with fraud at the terminal itself) is scored by the default engine in two topologies, for each N:

- ``independent``: N engines, customers routed as the producers' partitioner does, each learning
  only its partition's labels and terminal traffic (how the service scaled out before shared
  learning);
- ``shared``: :class:`ScaledTopology`, N scorers sharing one learner (docs/shared-learning.md).

ROC AUC and average precision are computed on the last 14 days with the simulator's ground truth
(detector/evaluation.py); "events/s" and "CPU us/tx" are measured per run (on a loaded machine:
compare the ratios, not absolute figures).

    python bench/partition_bench.py --cards 2000 --terminals 5000 --partitions 1 3 12
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import print_table, write_json

from detector.backtest.routing import partition_for
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.records import Label, Transaction
from detector.engine.shared import SharingConfig
from detector.engine.topology import ScaledTopology
from detector.evaluation import average_precision, roc_auc
from producers.config import preset
from producers.simulator import SimulatedTransaction, simulate

DAY = 86400.0


def independent(config: EngineConfig, partitions: int, events: list[Transaction | Label]) -> dict[str, float]:
    engines = [DetectionEngine(config) for _ in range(partitions)]
    scores: dict[str, float] = {}
    for event in events:
        engine = engines[partition_for(event.customer_id, partitions)]
        if type(event) is Transaction:
            scores[event.transaction_id] = engine.process_transaction(event).score
        else:
            engine.process_label(event)
    return scores


def shared(config: EngineConfig, partitions: int, events: list[Transaction | Label]) -> dict[str, float]:
    topology = ScaledTopology(config, partitions)
    scores: dict[str, float] = {}
    for outcomes in (*(topology.feed(event) for event in events), topology.finish()):
        for outcome in outcomes:
            if outcome.decision is not None:
                scores[outcome.decision.transaction.transaction_id] = outcome.decision.score
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="stationary", help="(default: stationary, the default stream over 60 days)"
    )
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--cards", type=int, default=2_000)
    parser.add_argument("--terminals", type=int, default=5_000)
    parser.add_argument("--fraud-rate", type=float, default=None, help="(default: the preset's)")
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 3, 12])
    parser.add_argument(
        "--epoch", type=float, default=EngineConfig().sharing.epoch, help="sharing.epoch, seconds"
    )
    parser.add_argument("--json", default="out/bench/partitions.json")
    args = parser.parse_args(argv)

    base = preset(args.preset)
    simulation = replace(
        base,
        days=args.days,
        population=replace(base.population, cards=args.cards, terminals=args.terminals),
        fraud_rate=base.fraud_rate if args.fraud_rate is None else args.fraud_rate,
    )
    stream = list(simulate(simulation))
    events = [item.transaction if isinstance(item, SimulatedTransaction) else item for item in stream]
    truth = {i.transaction.transaction_id: i.is_fraud for i in stream if isinstance(i, SimulatedTransaction)}
    times = {
        i.transaction.transaction_id: i.transaction.event_time
        for i in stream
        if isinstance(i, SimulatedTransaction)
    }
    start = max(times.values()) - 14 * DAY
    tested = [tx for tx, t in times.items() if t >= start]
    labels = np.array([truth[tx] for tx in tested])
    print(
        f"stream: {len(events):,} events, {len(truth):,} transactions, {sum(truth.values()):,} frauds; "
        f"last 14 days: {len(tested):,} transactions, {int(labels.sum()):,} frauds"
    )
    config = EngineConfig(sharing=SharingConfig(epoch=args.epoch))
    rows = []
    for topology, run in (("independent", independent), ("shared", shared)):
        for partitions in args.partitions:
            gc.collect()  # each run starts with no garbage of the one before
            cpu, wall = time.process_time(), time.perf_counter()
            scores = run(config, partitions, events)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            tested_scores = np.array([scores[tx] for tx in tested])
            rows.append(
                {
                    "topology": topology,
                    "partitions": partitions,
                    "ROC AUC": roc_auc(labels, tested_scores),
                    "avg precision": average_precision(labels, tested_scores),
                    "events/s": len(events) / wall,
                    "CPU us/tx": 1e6 * cpu / len(truth),
                }
            )
            print_table(f"{topology}, {partitions} partition(s)", rows[-1:])
    for row in rows:
        first = next(
            r for r in rows if r["topology"] == row["topology"] and r["partitions"] == args.partitions[0]
        )
        row["AUC vs N=1"] = row["ROC AUC"] / first["ROC AUC"] - 1
        row["AP vs N=1"] = row["avg precision"] / first["avg precision"] - 1
    print_table(f"partition invariance, last 14 of {args.days:g} days (epoch {args.epoch:g} s)", rows)
    write_json(args.json, "partitions", rows, events=len(events), days=args.days, epoch=args.epoch)


if __name__ == "__main__":
    main()
