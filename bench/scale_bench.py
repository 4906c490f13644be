"""Benchmark 5: one service instance against two in one consumer group, on the same published stream.

What: throughput of the detector service (exactly-once on, audit on) with 1 and with 2 instances
sharing the input partitions (``--partitions``, 4 by default), and the ratio. Instances are child
processes (``python -m detector.cli run``): two services in one interpreter would share its GIL.

How: for each run, fresh topics; the instances start and are waited for until they own every input
partition between them (each owns some, all recovered), so no rebalance falls inside the timing.
Then the same simulated stream (transactions and labels) is published as fast as the producer goes,
and the run is timed from the start of publishing to the arrival of the last decision at a
read_committed consumer of the decisions topic. The runs go in the order 1, 2, 2, 1 (``--rounds``
2), so a drift in the machine's background load weighs on both counts alike; a first, discarded
run warms the broker's JIT.

CPU: user + system seconds from /proc/<pid>/stat over the timed window, for each instance, the
broker (when this run started it; with KAFKA_BOOTSTRAP_SERVERS its pid is unknown) and this process
(the producer and the reader), per 1,000 transactions, and the cores they kept busy together;
"others' cores" is what every other process used meanwhile (from /proc/stat): other people's work
on the same machine, the noise of the measurement; "stolen cores" is the time the hypervisor gave
this machine's cores to other machines, which slows every process of the run.
"engine tx/s" is the bare engine in this process on the same stream, just before and just after
each run (their mean), and "ratio to engine" the run's rate against it, as in service_bench: with
two instances, the most this machine gives the service by running it in more processes; "ceiling
ratio" is the ceiling against the bare engine (service_bench's "CPU-bound ratio").
The ceiling printed at the end is the rate at which the services and the broker would need every
core of this machine: on 2 cores shared by the broker and the instances, a second instance can
only help while the first leaves a core idle (one instance scores a batch, then waits for its
commit: the CPU it leaves idle while it waits is what a second instance can use).

    python bench/scale_bench.py
    python bench/scale_bench.py --transactions 80000 --partitions 4 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    Broker,
    cpu_sample,
    cpu_used,
    engine_rate,
    kafka_broker_process,
    wait_until_assigned,
)
from report import print_table, write_json

from detector.engine.records import Label, Transaction
from detector.service.engine_setup import engine_config_for
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import ArrivalReader
from devkit.settings import settings_env, unique_settings
from devkit.streams import simulated_stream
from devkit.topics import create_service_topics


def timed_run(
    broker: Broker, items: list[Transaction | Label], instances: int, args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One run on fresh topics: its throughput row, and one CPU row per process."""
    settings = unique_settings(broker.bootstrap)
    engine_before = engine_rate(items, engine_config_for(settings))
    create_service_topics(settings, args.partitions)
    n_transactions = sum(isinstance(item, Transaction) for item in items)
    with ExitStack() as stack:
        services = [
            stack.enter_context(
                ServiceProcess(
                    settings_env(settings.replaced(instance_id=f"i{k}")),
                    Path(args.log_dir) / f"{settings.group_id}-i{k}.log",
                )
            )
            for k in range(instances)
        ]
        wait_until_assigned(services, args.partitions)
        reader = stack.enter_context(ArrivalReader(settings.bootstrap_servers, settings.decisions_topic))
        pids = {f"instance {k + 1}": service.pid for k, service in enumerate(services)}
        pids["bench (producer, reader)"] = os.getpid()
        if broker.pid is not None:
            pids["broker"] = broker.pid
        before = cpu_sample(pids)
        started = time.time()
        publish(settings, items)
        published = time.time() - started
        if not reader.wait_for(n_transactions, args.timeout):
            raise RuntimeError(f"only {len(reader.arrived):,} of {n_transactions:,} decisions arrived")
        elapsed = max(reader.arrived.values()) - started
        used = cpu_used(before, cpu_sample(pids))
        sampled = time.time() - started
    engine = (engine_before + engine_rate(items, engine_config_for(settings))) / 2

    per_1k = {name: 1000.0 * seconds / n_transactions for name, seconds in used.items()}
    work = sum(value for name, value in per_1k.items() if name.startswith(("instance", "broker")))
    row = {
        "instances": instances,
        "tx/s": n_transactions / elapsed,
        "seconds": elapsed,
        "engine tx/s": engine,
        "ratio to engine": n_transactions / elapsed / engine,
        "publish s": published,
        "services cpu s/1k tx": sum(v for name, v in per_1k.items() if name.startswith("instance")),
        "broker cpu s/1k tx": per_1k.get("broker", float("nan")),
        "cores busy": sum(used[name] for name in pids) / sampled,
        "ceiling tx/s": 1000.0 * (os.cpu_count() or 1) / work,
        "ceiling ratio": 1000.0 * (os.cpu_count() or 1) / work / engine,
        "others' cores": used["others"] / sampled,
        "stolen cores": used["stolen"] / sampled,
    }
    cpu_rows = [
        {
            "instances": instances,
            "process": name,
            "cpu s": used[name],
            "cpu s/1k tx": per_1k[name],
            "cores": used[name] / sampled,
        }
        for name in [*pids, "others"]
    ]
    return row, cpu_rows


def _mean(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("tx/s", "ratio to engine", "cores busy", "ceiling tx/s", "ceiling ratio")
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=40_000)
    parser.add_argument("--cards", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="1: runs 1, 2; 2: runs 1, 2, 2, 1")
    parser.add_argument("--warmup-transactions", type=int, default=5_000, help="discarded first run; 0: none")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--log-dir", default="out/bench/logs")
    parser.add_argument("--json", default="out/bench/scale.json")
    args = parser.parse_args(argv)

    items = simulated_stream(args.transactions, args.cards)
    order = [1, 2, 2, 1] * (args.rounds // 2) + [1, 2] * (args.rounds % 2)
    print(
        f"stream: {args.transactions:,} transactions, {len(items) - args.transactions:,} labels; runs {order}"
    )
    rows: list[dict[str, Any]] = []
    cpu_rows: list[dict[str, Any]] = []
    with kafka_broker_process() as broker:
        if args.warmup_transactions:
            warmup = simulated_stream(args.warmup_transactions, args.cards, seed=2)
            print_table("broker warm-up run (discarded)", [timed_run(broker, warmup, 1, args)[0]])
        for instances in order:
            row, cpu = timed_run(broker, items, instances, args)
            rows.append(row)
            cpu_rows.extend(cpu)
            print_table(f"{instances} instance(s)", [row])
            print_table("CPU by process", cpu)

    mean = {n: _mean([row for row in rows if row["instances"] == n]) for n in (1, 2)}
    ratio = mean[2]["tx/s"] / mean[1]["tx/s"]
    print_table("throughput, 1 and 2 instances in one consumer group, same stream, exactly-once", rows)
    print_table("CPU seconds per 1,000 transactions, by process", cpu_rows)
    conclusion = (
        f"2 instances / 1 instance: {ratio:.2f}x (mean {mean[2]['tx/s']:.0f} against {mean[1]['tx/s']:.0f}"
        f" tx/s), with {mean[1]['cores busy']:.2f} and {mean[2]['cores busy']:.2f} of {os.cpu_count()}"
        f" cores busy; ceiling if the services and the broker had every core: {mean[1]['ceiling tx/s']:.0f}"
        f" tx/s (1 instance), {mean[2]['ceiling tx/s']:.0f} tx/s (2 instances); against the bare engine:"
        f" {mean[1]['ratio to engine']:.2f}x (1 instance), {mean[2]['ratio to engine']:.2f}x (2 instances),"
        f" ceilings {mean[1]['ceiling ratio']:.2f}x and {mean[2]['ceiling ratio']:.2f}x"
    )
    print(f"\n{conclusion}")
    write_json(
        args.json,
        "scale",
        rows,
        cpu=cpu_rows,
        ratio=ratio,
        conclusion=conclusion,
        transactions=args.transactions,
        partitions=args.partitions,
        cores=os.cpu_count(),
    )


if __name__ == "__main__":
    main()
