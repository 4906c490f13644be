"""Benchmark 2: the same stream through the bare engine and through the full service, in one run.

The stream is published to a real broker first (not timed). Then the bare engine processes it in
memory, and the service (exactly-once on, audit on, in a thread of this process) consumes it from
Kafka; the service is timed from readiness to the commit of the transaction holding the last
decision. The ratio of the two rates is the figure to watch: absolute rates depend on the machine,
and on this one the broker shares the two cores with the service. The bare engine runs before and
after the service and the ratio uses the mean, as a shared machine's speed drifts over minutes;
"engine drift" is how far the two runs differ. A discarded first service run warms the broker's
JIT. CPU time per transaction of this process (the service thread and librdkafka's) and of the
broker shows where the cores went. "CPU-bound ratio" is the most those costs allow on this machine:
the rate with every core busy on service and broker work alone, against the bare engine. No
restructuring of the service (more threads, more processes) can pass it without cutting the CPU
spent per transaction.

    python bench/service_bench.py --transactions 50000
    python bench/service_bench.py --transactions 20000 --profile out/bench/service.prof
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    RunningService,
    cpu_sample,
    cpu_used,
    engine_rate,
    kafka_broker_process,
    warm_up_broker,
)
from report import print_table, write_json

from detector.engine import MODEL_KINDS
from detector.engine.config import EngineConfig
from detector.engine.model import ModelConfig
from detector.engine.records import Label, Transaction
from detector.service.settings import ServiceSettings
from devkit.publishing import publish
from devkit.settings import unique_settings
from devkit.streams import simulated_stream
from devkit.topics import create_input_topics


def service_rate(
    settings: ServiceSettings,
    items: list[Transaction | Label],
    config: EngineConfig,
    partitions: int,
    *,
    pids: dict[str, int],
    profile: str | None,
) -> tuple[float, dict[str, float]]:
    """Transactions per second, and CPU microseconds per transaction of each process in ``pids``,
    of everything else on the machine and stolen by the hypervisor, while the service ran."""
    create_input_topics(settings, partitions)
    publish(settings, items)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    profiler = cProfile.Profile() if profile else None
    with RunningService(settings, config, profiler) as running:
        running.wait_ready()
        before = cpu_sample(pids)
        started = time.perf_counter()
        running.wait_decisions(n_transactions)
        elapsed = time.perf_counter() - started
        used = cpu_used(before, cpu_sample(pids))
    if profiler and profile:
        Path(profile).parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile)
        print(f"profile written to {profile} (python -m pstats {profile})")
    return n_transactions / elapsed, {name: 1e6 * seconds / n_transactions for name, seconds in used.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--cards", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ServiceSettings.model_fields["batch_size"].default,
        help="FRAUD_BATCH_SIZE of the service",
    )
    parser.add_argument("--models", nargs="+", default=["logistic_regression"], choices=MODEL_KINDS)
    parser.add_argument("--profile", help="write a cProfile of the service's consuming thread to this file")
    parser.add_argument("--json", default="out/bench/service.json")
    args = parser.parse_args(argv)

    items = simulated_stream(args.transactions, args.cards)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    print(f"stream: {n_transactions:,} transactions, {len(items) - n_transactions:,} labels")
    rows = []
    with kafka_broker_process() as broker:
        warm_up_broker(broker.bootstrap)
        pids = {"service": os.getpid()} | ({"broker": broker.pid} if broker.pid else {})
        for kind in args.models:
            config = EngineConfig(model=ModelConfig(kind=kind))
            before = engine_rate(items, config)
            settings = unique_settings(
                broker.bootstrap, checkpoint_interval_s=30.0, batch_size=args.batch_size
            )
            served, cpu = service_rate(
                settings, items, config, args.partitions, pids=pids, profile=args.profile
            )
            after = engine_rate(items, config)
            bare = (before + after) / 2
            cpu_bound = (os.cpu_count() or 1) / (1e-6 * (cpu["service"] + cpu.get("broker", 0.0)))
            rows.append(
                {
                    "model": kind,
                    "engine tx/s": bare,
                    "engine drift": abs(after - before) / bare,
                    "service tx/s": served,
                    "ratio": served / bare,
                    "CPU-bound ratio": cpu_bound / bare,
                    "engine us/tx": 1e6 / bare,
                    **{f"{name} CPU us/tx": value for name, value in cpu.items()},
                }
            )
            if len(args.models) > 1:  # progress, as each model takes minutes
                print_table(f"service against bare engine, {kind}", rows[-1:])
    print_table("service (Kafka, exactly-once, audit) against the bare engine, same events, same run", rows)
    write_json(
        args.json,
        "service",
        rows,
        transactions=n_transactions,
        partitions=args.partitions,
        batch_size=args.batch_size,
    )


if __name__ == "__main__":
    main()
