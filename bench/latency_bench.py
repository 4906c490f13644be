"""Benchmark 3: latency from producing a transaction to its decision being readable, at fixed rates.

What: for each run, the detector service (exactly-once on, audit on) runs as a child process
(``python -m detector.cli run``, its own interpreter, as deployed) on fresh topics. This process
produces the simulated stream (transactions with their labels) at a fixed rate of transactions a
second for ``--warmup`` + ``--seconds`` seconds, and a read_committed consumer of the decisions
topic, in a thread, notes when each decision arrives (decisions are keyed by transaction id).
Latency = arrival of the decision - the ``produce()`` call of the transaction, both on this
machine's wall clock, so the producer's own batching (librdkafka's default ``linger.ms`` of
5 ms) is part of it. Labels are produced right after the transaction they follow in the stream,
unpaced.

How: pacing schedules each transaction at an absolute time from the start (producers.pacing's
RatePacer), so late wake-ups do not add up to drift; the achieved produce rate is reported. The
first ``--warmup`` seconds of every run are produced but left out of the statistics (connection
set-up, first fetches, the model's first allocations). Reported per run: produced and decided
transactions a second in the measured window (decided = decisions that became readable in it, so
a service that falls behind shows its real rate), p50 / p99 / max latency, decisions missing after
the drain, records per Kafka transaction and commits a second (from the service's log), and CPU
seconds per 1,000 transactions of the service and (when this run started it) the broker, over the
measured window, and the cores that other processes kept busy meanwhile (other people's work on
the same machine: the noise; from /proc/stat minus the processes above), and the cores the
hypervisor gave to other machines ("stolen", which slows every process of the run). The latency
is split at the decision's Kafka timestamp (CreateTime, set when the service produced it inside
its transaction): "to output" is waiting for the batch and scoring, "output->read" is the commit
and the reader's fetch. Runs are shorter than the service's 60 s checkpoint interval, so no periodic
checkpoint falls inside them. A first, discarded run warms the broker's JIT, so it does not weigh
on whichever setting runs first.

The runs: every ``--rates`` at ``--batch-timeout-ms``, then every ``--compare-timeouts-ms`` at
``--compare-rate``, so the commit interval's trade is read at one rate in one run: a short batch
timeout commits more often (lower latency, more CPU per transaction, so less headroom); a long one
batches more (higher latency, less CPU). The goals reported against: p99 <= 50 ms at 1,000 tx/s and
p99 <= 100 ms at 2,000 tx/s, each as the ratio of the measured p99 to its goal (<= 1 is met).

    python bench/latency_bench.py
    python bench/latency_bench.py --rates 1000 --compare-timeouts-ms 10 20 50 --seconds 30
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    Broker,
    cpu_sample,
    cpu_used,
    kafka_broker_process,
    wait_until_assigned,
)
from report import print_table, write_json

from detector.engine.records import Label, Transaction
from detector.service.settings import ServiceSettings
from devkit.process import ServiceProcess
from devkit.reading import ArrivalReader
from devkit.settings import settings_env, unique_settings
from devkit.streams import simulated_stream
from devkit.topics import create_service_topics
from producers.pacing import RatePacer

GOAL_RATE = 1000.0
GOALS_P99_MS = {GOAL_RATE: 50.0, 2000.0: 100.0}  # offered tx/s -> p99 goal


class Encoded(NamedTuple):
    """A stream item ready to produce; ``transaction_id`` is None for a label."""

    transaction_id: bytes | None
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Run:
    """One run: the offered rate, FRAUD_BATCH_TIMEOUT_MS, and the seconds measured after the warm-up."""

    rate: float
    batch_timeout_ms: int
    seconds: float


@dataclass
class Produced:
    """When each transaction was produced, and the bounds of the measured window."""

    times: dict[bytes, float]
    records: int
    window_start: float
    window_end: float


def encode(items: list[Transaction | Label]) -> list[Encoded]:
    """Serialised once, before any run, so the pacing loop only produces."""
    return [
        Encoded(
            item.transaction_id.encode() if isinstance(item, Transaction) else None,
            item.customer_id.encode(),
            item.to_json(),
        )
        for item in items
    ]


def produce_paced(
    settings: ServiceSettings,
    stream: list[Encoded],
    run: Run,
    warmup: float,
    at_window_start: Callable[[], None],
) -> Produced:
    """Transactions at ``run.rate`` a second for ``warmup + run.seconds``, each label right after its
    predecessor; ``at_window_start`` is called once, when the first measured transaction is due."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True})
    failures: list[str] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(str(error))

    pacer = RatePacer(run.rate)
    times: dict[bytes, float] = {}
    records = 0
    started = time.time()
    window_start, window_end = started + warmup, started + warmup + run.seconds
    in_window = False
    for item in stream:
        topic = settings.labels_topic
        if item.transaction_id is not None:
            pacer.wait(0.0)
            now = time.time()
            if now >= window_end:
                break
            if not in_window and now >= window_start:
                in_window = True
                at_window_start()
            times[item.transaction_id] = now
            topic = settings.transactions_topic
        producer.produce(topic, item.value, key=item.key, on_delivery=delivered)
        producer.poll(0)
        records += 1
    else:
        raise RuntimeError("the stream ran out before the run ended")
    if producer.flush(60) or failures:
        raise RuntimeError(f"not every record was delivered: {failures[:3]}")
    return Produced(times, records, window_start, window_end)


def measure(broker: Broker, stream: list[Encoded], args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """One run on fresh topics with a fresh service process: latency, rates, commits and CPU."""
    settings = unique_settings(
        broker.bootstrap, batch_size=args.batch_size, batch_timeout_ms=run.batch_timeout_ms
    )
    create_service_topics(settings, args.partitions)
    log_path = Path(args.log_dir) / f"{settings.group_id}.log"
    samples: list[tuple[float, dict[str, float]]] = []  # (wall time, CPU sample) at window start and end
    with ServiceProcess(settings_env(settings), log_path) as service:
        pids = {"service": service.pid, "bench": os.getpid()}
        if broker.pid is not None:
            pids["broker"] = broker.pid
        wait_until_assigned([service], args.partitions)
        with ArrivalReader(settings.bootstrap_servers, settings.decisions_topic) as reader:
            produced = produce_paced(
                settings, stream, run, args.warmup, lambda: samples.append((time.time(), cpu_sample(pids)))
            )
            reader.wait_for(len(produced.times), args.drain_timeout)
            samples.append((time.time(), cpu_sample(pids)))
            arrived, created = dict(reader.arrived), dict(reader.created)
        service.stop()
        commits = service.log_events("stopped")[0]["transactions_committed"]

    window = produced.window_end - produced.window_start
    measured = {tid: at for tid, at in produced.times.items() if at >= produced.window_start}
    decided = [tid for tid in measured if tid in arrived]
    latencies_ms = np.array([1000.0 * (arrived[tid] - measured[tid]) for tid in decided])
    to_output_ms = np.array([1000.0 * (created[tid] - measured[tid]) for tid in decided])
    decided_in_window = sum(produced.window_start <= at < produced.window_end for at in arrived.values())
    per_1k = 1000.0 / len(measured)
    (started, before), (ended, after) = samples
    used = cpu_used(before, after)
    return {
        "rate": run.rate,
        "batch ms": run.batch_timeout_ms,
        "produced tx/s": len(measured) / window,
        "decided tx/s": decided_in_window / window,
        "p50 ms": float(np.percentile(latencies_ms, 50)),
        "p99 ms": float(np.percentile(latencies_ms, 99)),
        "max ms": float(latencies_ms.max()),
        "p50 to output ms": float(np.percentile(to_output_ms, 50)),
        "p99 to output ms": float(np.percentile(to_output_ms, 99)),
        "p50 output->read ms": float(np.percentile(latencies_ms - to_output_ms, 50)),
        "p99 output->read ms": float(np.percentile(latencies_ms - to_output_ms, 99)),
        "missing": len(produced.times) - sum(tid in arrived for tid in produced.times),
        "records/commit": produced.records / commits,
        "commits/s": commits / (args.warmup + run.seconds),
        "service cpu s/1k tx": used["service"] * per_1k,
        "broker cpu s/1k tx": used.get("broker", float("nan")) * per_1k,
        "others' cores": used["others"] / (ended - started),
        "stolen cores": used["stolen"] / (ended - started),
    }


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        goal = GOALS_P99_MS.get(row["rate"])
        if goal is None:
            continue
        p99 = row["p99 ms"]
        verdict = "met" if p99 <= goal else "missed"
        lines.append(
            f"batch timeout {row['batch ms']} ms: p99 {p99:.0f} ms at {row['produced tx/s']:.0f} tx/s"
            f" against the goal of {goal:.0f} ms at {row['rate']:.0f} tx/s: p99 / goal = {p99 / goal:.2f},"
            f" {verdict}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[500.0, 1000.0, 2000.0])
    parser.add_argument("--batch-timeout-ms", type=int, default=20, help="FRAUD_BATCH_TIMEOUT_MS for --rates")
    parser.add_argument("--compare-rate", type=float, default=GOAL_RATE)
    parser.add_argument("--compare-timeouts-ms", type=int, nargs="*", default=[5, 100, 500])
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ServiceSettings.model_fields["batch_size"].default,
        help="FRAUD_BATCH_SIZE for every run",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds produced first and not measured")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument(
        "--broker-warmup",
        type=float,
        default=40.0,
        help="seconds of a first, discarded run, so the broker's JIT warm-up does not land on one setting",
    )
    parser.add_argument("--cards", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--log-dir", default="out/bench/logs")
    parser.add_argument("--json", default="out/bench/latency.json")
    args = parser.parse_args(argv)

    runs = [Run(rate, args.batch_timeout_ms, args.seconds) for rate in args.rates] + [
        Run(args.compare_rate, timeout, args.seconds) for timeout in args.compare_timeouts_ms
    ]
    warmup_run = Run(args.compare_rate, args.batch_timeout_ms, args.broker_warmup)
    measured_runs = [*runs, warmup_run] if args.broker_warmup > 0 else runs
    needed = int(1.1 * max(run.rate * (args.warmup + run.seconds) for run in measured_runs))
    stream = encode(simulated_stream(needed, args.cards))
    gc.freeze()  # the stream is never freed: keep full collections of it out of the reader's timestamps
    print(f"stream: {needed:,} transactions, {len(stream) - needed:,} labels; {len(runs)} runs")
    rows = []
    with kafka_broker_process() as broker:
        if args.broker_warmup > 0:
            print_table("broker warm-up run (discarded)", [measure(broker, stream, args, warmup_run)])
        for run in runs:
            rows.append(measure(broker, stream, args, run))
            print_table(f"{run.rate:g} tx/s, batch timeout {run.batch_timeout_ms} ms", rows[-1:])
    print_table(
        f"produce -> readable decision (read_committed), exactly-once on, batch size {args.batch_size},"
        f" first {args.warmup:g} s of each run discarded",
        rows,
    )
    goals = goal_lines(rows)
    print("\n".join(["", *goals]))
    write_json(
        args.json,
        "latency",
        rows,
        goal=", ".join(f"p99 <= {ms:g} ms at {rate:g} tx/s" for rate, ms in GOALS_P99_MS.items()),
        goals=goals,
        batch_size=args.batch_size,
        seconds=args.seconds,
        warmup=args.warmup,
        partitions=args.partitions,
    )


if __name__ == "__main__":
    main()
