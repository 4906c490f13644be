"""Benchmark: the service holding millions of cards and scored transactions in its state on disk.

What: ``fraud-detector run`` as a child process (state in RocksDB under ``FRAUD_STATE_DIR``, a temp
directory) scores ``--transactions`` synthetic transactions over ``--cards`` distinct cards, every
card at least once, on a 1-partition input; none is labelled until all are decided, so they all
wait as pending scores (engine config: ``max_pending`` and ``max_cards`` at least the stream's,
a 10-year label horizon, so nothing expires). Then labels for ``--labels-fraction`` of them,
stamped a little after their transaction (and before the watermark, so each is applied as soon
as it is read), and ``TRAILING`` later transactions that close the labels' epoch so the learner
joins them. Printed:

* resident memory of the service (VmRSS from /proc, sampled every second; VmHWM, the kernel's
  peak) while scoring, labelling and restoring, and the engine's state gauges (metrics endpoint);
* checkpoints from the service's log (``checkpoint_written``): count, the loop's pause for each
  (``seconds``: max, p99, how many over 100 ms), snapshot bytes and state changes;
* the longest pause of the loop, which the service neither logs nor exports as a maximum (only
  ``fraud_batch_duration_seconds``, a histogram: batches over 100 ms are counted from its
  buckets). Two approximations from the decisions topic while the input is backlogged: the
  longest interval between consecutive decisions' Kafka CreateTime (when the service produced
  them: a checkpoint, a commit and the next fetch lie between two batches), and the longest
  interval between arrivals of committed decisions at a reader in this process (its own polling
  and scheduling add to it);
* failures in the log: ``transaction_timed_out``, ``transaction_failed``, ``kafka_failure`` and
  other warnings and errors by event;
* labels: joined at the scorer and unknown (``fraud_labels_joined`` / ``fraud_labels_unknown``),
  expired pending scores, and the learner's joined / unjoined counts, which no metric exports:
  read from the engine of the final checkpoint (its snapshot with the state database);
* throughput: decisions a second, CreateTime of the first to the last decision, and the
  service's CPU seconds per thousand;
* restore: after SIGTERM, a restart on the kept state directory (``state_local``) and one with it
  deleted (``state_rebuilt`` from the changes in the checkpoint topic): seconds from the process's
  spawn to ``recovery_done``, the recovery's own seconds, and the rebuild's changes and seconds.

Terminals: ``--terminals`` (10,000), not a tenth of the cards as in the simulator, as the issue is
about cards and pending scores; raise it to see the terminal table's share of a checkpoint (while
it was pickled whole into every snapshot, 200,000 terminals alone took 57 MB and 0.6 s).

The stream is published before the service starts (not timed). On this 2-core machine the broker
and this script share the cores with the service; another process's load slows it further.

    python bench/state_bench.py --cards 20000 --transactions 100000
    python bench/state_bench.py                                   # 2M cards, 10M transactions
    python bench/state_bench.py --cards 2000000 --transactions 4000000 --state-dir /tmp
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer
from harness import cpu_seconds, kafka_broker_process
from report import print_table, quantile, write_json

from detector.engine.engine import DetectionEngine
from detector.engine.features import DAY
from detector.engine.records import format_timestamp
from detector.service.checkpoints import load_checkpoint
from detector.service.reading import reader_config
from detector.service.settings import ServiceSettings
from detector.state.database import StateDatabase
from devkit.ports import free_port
from devkit.process import ServiceProcess
from devkit.reading import committed_consumer
from devkit.settings import settings_env, unique_settings
from devkit.topics import create_service_topics

START = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
TRAILING = 100  # transactions after the labels: their event time closes the labels' epoch
INSTANCE = "state-bench-1"
PAUSE_S = 0.1  # the bound on a checkpoint's pause
MB = 1024 * 1024
FAILURES = ("transaction_timed_out", "transaction_failed", "kafka_failure")


# -- the stream ---------------------------------------------------------------------------------


class Stream:
    """``transactions`` over ``cards`` (each at least once) within ``days`` of event time, in time
    order; a labelled subset; all as columns, turned into JSON bytes only when published."""

    def __init__(
        self, transactions: int, cards: int, terminals: int, *, days: float, labels_fraction: float, seed: int
    ) -> None:
        rng = np.random.default_rng(seed)
        self.size = transactions
        span = int(days * DAY)
        self.times = START + (np.arange(transactions, dtype=np.int64) * span) // transactions
        self.cards = np.concatenate([np.arange(cards), rng.integers(0, cards, transactions - cards)])
        rng.shuffle(self.cards)
        self.terminals = rng.integers(0, terminals, transactions)
        self.amounts = np.clip(rng.lognormal(3.5, 1.0, transactions), 0.01, 50_000.0)
        self.last_time = int(self.times[-1])
        # labelled: a sample of those at least 2 s before the last, stamped after their transaction
        # and before the watermark (the last transaction's time), so each joins as soon as it is read
        eligible = int(np.searchsorted(self.times, self.last_time - 2, side="right"))
        count = min(round(transactions * labels_fraction), eligible)
        self.labelled = np.sort(rng.choice(eligible, size=count, replace=False))
        delays = rng.integers(1, 3600, count)
        self.label_times = np.minimum(self.times[self.labelled] + delays, self.last_time - 1)
        self.label_frauds = rng.random(count) < 0.01
        self.trailing_cards = rng.integers(0, cards, TRAILING)

    def transactions(self) -> Any:
        """(key, value) of each transaction, in order."""
        times, cards, terminals = self.times.tolist(), self.cards.tolist(), self.terminals.tolist()
        amounts = self.amounts.tolist()
        for index in range(self.size):
            card = f"c{cards[index]}"
            yield (
                card.encode(),
                (
                    f'{{"transaction_id":"t{index}","timestamp":"{format_timestamp(times[index])}",'
                    f'"customer_id":"{card}","terminal_id":"m{terminals[index]}","amount":{amounts[index]:.2f}}}'
                ).encode(),
            )

    def labels(self) -> Any:
        cards = self.cards[self.labelled].tolist()
        for index, card, at, fraud in zip(
            self.labelled.tolist(), cards, self.label_times.tolist(), self.label_frauds.tolist(), strict=True
        ):
            yield (
                f"c{card}".encode(),
                (
                    f'{{"transaction_id":"t{index}","customer_id":"c{card}",'
                    f'"is_fraud":{"true" if fraud else "false"},"timestamp":"{format_timestamp(float(at))}"}}'
                ).encode(),
            )

    def trailing(self) -> Any:
        """After the labels: 2 minutes on, two 60 s epochs past every label, within the skew bound."""
        for index, card in enumerate(self.trailing_cards.tolist()):
            at = float(self.last_time + 120 + index)
            yield (
                f"c{card}".encode(),
                (
                    f'{{"transaction_id":"z{index}","timestamp":"{format_timestamp(at)}",'
                    f'"customer_id":"c{card}","terminal_id":"m0","amount":10.00}}'
                ).encode(),
            )


def publish(bootstrap: str, topic: str, records: Any) -> tuple[int, float]:
    """Produce every (key, value) to partition 0 of ``topic``; how many, and the seconds it took."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    failures: list[str] = []

    def delivered(error: object, _: object) -> None:
        if error is not None:
            failures.append(str(error))

    began = time.monotonic()
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key=key, partition=0, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(300) or failures:
        raise RuntimeError(f"not every record was delivered: {failures[:3]}")
    return count, time.monotonic() - began


# -- what the run watches -----------------------------------------------------------------------


class DecisionWatch(threading.Thread):
    """Reads the decisions topic (committed only) as it is written: how many, and the longest gaps
    between consecutive decisions' CreateTime and between arrivals here, up to the ``backlogged``-th."""

    def __init__(self, bootstrap: str, topic: str, backlogged: int) -> None:
        super().__init__(name="decisions", daemon=True)
        self._consumer, _ = committed_consumer(bootstrap, topic, {"fetch.wait.max.ms": 10})
        self.backlogged = backlogged
        self.count = 0
        self.first_created: float | None = None
        self.last_created: float | None = None  # of the backlogged-th, or the latest before it
        self.first_arrival: float | None = None
        self.created_gaps: list[tuple[float, float, int]] = []  # (gap s, start s, count) over PAUSE_S
        self.arrival_gap = (0.0, 0.0, 0)
        self.create_time_kind: int | None = None
        self._stopping = threading.Event()
        self.start()

    def run(self) -> None:
        previous_created = previous_arrival = None
        while not self._stopping.is_set():
            messages = self._consumer.consume(10_000, 0.05)
            now = time.time()
            seen = 0
            for message in messages:
                if message.error() is not None:
                    continue
                kind, milliseconds = message.timestamp()
                created = milliseconds / 1000.0
                self.count += 1
                seen += 1
                if self.count == 1:
                    self.first_created, self.create_time_kind = created, kind
                elif self.count <= self.backlogged and previous_created is not None:
                    gap = created - previous_created
                    if gap > PAUSE_S:
                        self.created_gaps.append((gap, previous_created, self.count - 1))
                if self.count <= self.backlogged:
                    self.last_created = created
                previous_created = created
            if seen and self.count - seen < self.backlogged:
                if previous_arrival is None:
                    self.first_arrival = now
                elif now - previous_arrival > self.arrival_gap[0]:
                    self.arrival_gap = (now - previous_arrival, previous_arrival, self.count - seen)
                previous_arrival = now

    def wait_for(self, count: int, service: ServiceProcess, timeout: float, label: str) -> None:
        deadline = time.monotonic() + timeout
        last_report, reported = time.monotonic(), self.count
        while self.count < count:
            if not service.alive():
                raise RuntimeError(
                    f"the service exited ({service.process.returncode}) at {self.count:,} decisions"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: only {self.count:,} of {count:,} decisions in {timeout:.0f} s")
            if time.monotonic() - last_report >= 60:
                rate = (self.count - reported) / (time.monotonic() - last_report)
                rss = (status_kb(service.pid, "VmRSS") or 0) / 1024
                print(
                    f"  {label}: {self.count:,} of {count:,} decisions, {rate:,.0f}/s, RSS {rss:,.0f} MB",
                    flush=True,
                )
                last_report, reported = time.monotonic(), self.count
            time.sleep(0.2)

    def close(self) -> None:
        self._stopping.set()
        self.join(30)
        self._consumer.close()


class MemoryWatch(threading.Thread):
    """VmRSS of a process every ``interval`` seconds, by phase; VmHWM read on request."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(name="rss", daemon=True)
        self.interval = interval
        self.pid: int | None = None
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self.samples: list[tuple[float, str, int]] = []
        self._stopping = threading.Event()
        self.start()

    def watch(self, pid: int, phase: str) -> None:
        self.pid, self.phase = pid, phase

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            if self.pid is None:
                continue
            rss = status_kb(self.pid, "VmRSS")
            if rss is None:
                continue
            self.samples.append((round(time.time(), 1), self.phase, rss))
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)

    def peak_mb(self, phase: str) -> float | str:
        """The largest sample of ``phase`` in MB; a phase shorter than the interval may have none."""
        return round(self.peaks[phase] / 1024, 1) if phase in self.peaks else "no sample"

    def close(self) -> None:
        self._stopping.set()
        self.join(5)


def status_kb(pid: int, field: str) -> int | None:
    """A field of /proc/<pid>/status in kB (VmRSS, VmHWM), None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples, each series summed over its labels but ``le`` (and kind, input)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if "{" in name:
            base, _, labels = name.partition("{")
            kept = [
                part
                for part in labels.rstrip("}").split(",")
                if part.split("=")[0] in ("le", "kind", "input", "outcome", "state")
            ]
            name = base + ("{" + ",".join(kept) + "}" if kept else "")
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals


def wait_for_metric(port: int, name: str, value: float, service: ServiceProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while scrape(port).get(name, 0.0) < value:
        if not service.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not reach {value} (now {scrape(port).get(name, 0.0)})")
        time.sleep(0.5)


def wait_for_event(service: ServiceProcess, event: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = service.log_events(event)
        if found:
            return found[0]
        if not service.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"no {event} in {service.log_path}")
        time.sleep(0.2)


def last_text_line(path: Path) -> str:
    """The last line of a log that is not JSON: a traceback's last line, after a crash."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line and line[0] != "{"]
    return lines[-1] if lines else ""


def at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def learner_stats(settings: ServiceSettings, database: Path) -> dict[str, int]:
    """The engine stats of the latest checkpoint of partition 0, restored with its state database
    (the service stopped): the learner's joined and unjoined labels are exported by no metric."""
    consumer = Consumer(
        reader_config({"bootstrap.servers": settings.bootstrap_servers}, "state-bench-reader")
    )
    try:
        checkpoint = load_checkpoint(consumer, settings.checkpoint_topic, 0)
    finally:
        consumer.close()
    if checkpoint is None:
        return {}
    state = StateDatabase(database)
    try:
        engine = DetectionEngine.restore(checkpoint.snapshot, state)
        return {**dict(engine.stats), **{f"gauge {k}": v for k, v in engine.gauges().items()}}
    finally:
        state.close()


# -- the run ------------------------------------------------------------------------------------


def restart(
    env: dict[str, str], log: Path, memory: MemoryWatch, phase: str, timeout: float
) -> dict[str, Any]:
    """Start the service on what the previous one left, until it has recovered; then stop it."""
    spawned = time.time()
    service = ServiceProcess(env, log)
    memory.watch(service.pid, phase)
    try:
        done = wait_for_event(service, "recovery_done", timeout)
        time.sleep(1.5)  # a sample or two after recovery
        local = service.log_events("state_local")
        rebuilt = service.log_events("state_rebuilt")
        recovered = service.log_events("partition_recovered")
        hwm = status_kb(service.pid, "VmHWM") or 0
    finally:
        exit_code = service.stop(300)
    return {
        "restore": phase,
        "spawn to recovery_done s": round(at(done) - spawned, 2),
        "recovery_done s": done.get("seconds"),
        "state_local": bool(local),
        "rebuilt changes": rebuilt[0]["changes"] if rebuilt else None,
        "rebuilt s": rebuilt[0]["seconds"] if rebuilt else None,
        "transactions_scored": recovered[0].get("transactions_scored") if recovered else None,
        "RSS peak MB (VmHWM)": round(hwm / 1024, 1),
        "exit code": exit_code,
    }


def checkpoint_figures(events: list[dict[str, Any]]) -> dict[str, Any]:
    pauses = [entry["seconds"] for entry in events]
    changes = [entry.get("state_changes") or 0 for entry in events]
    sizes = [entry["bytes"] for entry in events]
    return {
        "checkpoints": len(events),
        "pause max s": max(pauses, default=float("nan")),
        "pause p99 s": quantile(pauses, 0.99),
        "pause p50 s": quantile(pauses, 0.5),
        f"pauses > {PAUSE_S} s": sum(pause > PAUSE_S for pause in pauses),
        "snapshot bytes max": max(sizes, default=0),
        "snapshot bytes p50": quantile(sizes, 0.5),
        "state changes max": max(changes, default=0),
        "state changes total": sum(changes),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cards", type=int, default=2_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument(
        "--terminals",
        type=int,
        default=10_000,
        help="distinct terminals (the simulator: a tenth of the cards)",
    )
    parser.add_argument("--labels-fraction", type=float, default=0.01)
    parser.add_argument("--days", type=float, default=20.0, help="event time spanned (< the 30-day card TTL)")
    parser.add_argument("--state-dir", default=None, help="where the temp state directory is made")
    parser.add_argument("--keep-state", action="store_true", help="leave the state directory behind")
    parser.add_argument("--checkpoint-max-changes", type=int, default=None, help="default: the service's")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=7200.0, help="most seconds for the scoring")
    parser.add_argument("--log-dir", default="out/bench/logs")
    parser.add_argument("--json", default="out/bench/state.json")
    args = parser.parse_args(argv)
    if args.transactions < args.cards:
        parser.error("--transactions must be at least --cards: every card appears")
    terminals = args.terminals

    began = time.monotonic()
    stream = Stream(
        args.transactions,
        args.cards,
        terminals,
        days=args.days,
        labels_fraction=args.labels_fraction,
        seed=args.seed,
    )
    labels = len(stream.labelled)
    print(
        f"stream: {args.transactions:,} transactions, {args.cards:,} cards, {terminals:,} terminals over"
        f" {args.days:g} days; {labels:,} labels, then {TRAILING} trailing transactions"
        f" (built in {time.monotonic() - began:.1f} s)",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="state-bench-", dir=args.state_dir))
    engine_file = root / "engine.json"
    engine_file.write_bytes(
        orjson.dumps(
            {
                "max_pending": max(args.transactions + TRAILING, 5_000_000),
                "label_horizon": "3650d",
                "features": {"max_cards": max(args.cards, 2_000_000)},
            }
        )
    )
    memory = MemoryWatch()
    rows: dict[str, Any] = {}
    try:
        with kafka_broker_process() as broker:
            port = free_port()
            overrides: dict[str, Any] = {
                "instance_id": INSTANCE,
                "state_dir": str(root / "state"),
                "engine_config": str(engine_file),
                "topic_partitions": 1,
                "metrics_port": port,
            }
            if args.checkpoint_max_changes is not None:
                overrides["checkpoint_max_changes"] = args.checkpoint_max_changes
            settings = unique_settings(broker.bootstrap, **overrides)
            create_service_topics(settings, 1)
            env = settings_env(settings)
            shown = {
                name: value
                for name, value in env.items()
                if not name.endswith("_TOPIC")
                and name not in ("KAFKA_BOOTSTRAP_SERVERS", "FRAUD_PSEUDONYM_KEY")
            }
            shown["engine config"] = engine_file.read_text()
            print_table("settings", [{"setting": name, "value": value} for name, value in shown.items()])

            sent, seconds = publish(broker.bootstrap, settings.transactions_topic, stream.transactions())
            print(f"published {sent:,} transactions in {seconds:.0f} s", flush=True)
            rows["publish s"] = round(seconds, 1)
            log = Path(args.log_dir) / f"{settings.group_id}"
            watch = DecisionWatch(broker.bootstrap, settings.decisions_topic, args.transactions)

            spawned = time.time()
            service = ServiceProcess(env, log.with_suffix(".1.log"))
            memory.watch(service.pid, "scoring")
            print(f"service pid {service.pid}, log {service.log_path}", flush=True)
            scored_at, cpu_scoring, hwm_running, state_bytes = float("nan"), float("nan"), 0, 0
            scored_metrics: dict[str, float] = {}
            final_metrics: dict[str, float] = {}
            failure = None
            try:
                wait_for_event(service, "recovery_done", 300)
                cpu_before = cpu_seconds(service.pid)
                watch.wait_for(args.transactions, service, args.timeout, "scoring")
                scored_at = time.time()
                cpu_scoring = cpu_seconds(service.pid) - cpu_before
                scored_metrics = scrape(port)
                rows["RSS at end of scoring MB"] = round((status_kb(service.pid, "VmRSS") or 0) / 1024, 1)
                state_bytes = directory_bytes(root / "state")
                print(f"all {args.transactions:,} decided after {scored_at - spawned:.0f} s", flush=True)

                memory.watch(service.pid, "labels")
                sent, _ = publish(broker.bootstrap, settings.labels_topic, stream.labels())
                wait_for_metric(port, 'fraud_records_consumed_total{input="labels"}', sent, service, 1800)
                sent, _ = publish(broker.bootstrap, settings.transactions_topic, stream.trailing())
                watch.wait_for(args.transactions + TRAILING, service, 600, "trailing")
                time.sleep(2.0)  # a commit or two after the last decision: the metrics copy the engine's
                final_metrics = scrape(port)
                hwm_running = status_kb(service.pid, "VmHWM") or 0
                memory.watch(service.pid, "final checkpoint")
            except (RuntimeError, OSError) as error:  # the service died or stalled: report what there is
                failure = f"{type(error).__name__}: {error}"
                print(f"FIRST RUN FAILED: {failure}", flush=True)
            finally:
                exit_code = service.stop(600)
            watch.close()
            events = service.log_events()
            if exit_code != 0:
                failure = f"{failure or 'exit'}; service's last line: {last_text_line(service.log_path)}"
            database = root / "state" / INSTANCE / "0"
            try:
                stats = learner_stats(settings, database)
            except (ValueError, OSError) as error:
                stats = {}
                print(f"no engine stats from the final checkpoint: {error}", flush=True)

            restores = [
                restart(env, log.with_suffix(".2.log"), memory, "from the local store", 1800),
            ]
            shutil.rmtree(root / "state")
            restores.append(restart(env, log.with_suffix(".3.log"), memory, "from the changelog", 3600))
    finally:
        memory.close()
        ServiceProcess.kill_leftovers()
        if not args.keep_state:
            shutil.rmtree(root, ignore_errors=True)

    by_event = Counter(entry.get("event") for entry in events)
    problems = Counter(
        entry.get("event") for entry in events if entry.get("level") in ("warning", "error", "critical")
    )
    checkpoints = [entry for entry in events if entry.get("event") == "checkpoint_written"]
    scoring_end = float("inf") if math.isnan(scored_at) else scored_at
    scoring = [entry for entry in checkpoints if at(entry) <= scoring_end]
    created_s = (watch.last_created or float("nan")) - (watch.first_created or float("nan"))
    decided = min(watch.count, args.transactions)
    buckets = {
        name: value
        for name, value in scored_metrics.items()
        if name.startswith("fraud_batch_duration_seconds_bucket")
    }
    batches = scored_metrics.get("fraud_batch_duration_seconds_count", 0.0)
    within = buckets.get('fraud_batch_duration_seconds_bucket{le="1.0"}', float("nan"))

    def checkpoints_in(start: float, gap: float) -> list[float]:
        return [
            entry["seconds"] for entry in checkpoints if start - 0.001 <= at(entry) <= start + gap + 0.001
        ]

    long_gaps = sorted(watch.created_gaps, reverse=True)
    other_gaps = [gap for gap, start, _ in long_gaps if not checkpoints_in(start, gap)]

    def gauge(kind: str, metrics: dict[str, float]) -> float:
        return metrics.get(f'fraud_engine_state_entries{{kind="{kind}"}}', float("nan"))

    summary = {
        "transactions": args.transactions,
        "cards": args.cards,
        "terminals": terminals,
        "labels published": labels,
        **rows,
        "service spawn to last decision s": round(scored_at - spawned, 1),
        "decisions/s (CreateTime first..last)": round((decided - 1) / created_s, 1)
        if created_s
        else float("nan"),
        "service CPU s per 1k decisions": round(1000 * cpu_scoring / args.transactions, 3),
        "decided of the first run's transactions": decided,
        **{
            f"RSS max MB, {phase}": memory.peak_mb(phase)
            for phase in ("scoring", "labels", "final checkpoint")
        },
        "RSS peak MB (VmHWM), first run": round(hwm_running / 1024, 1),
        "cards held (gauge)": gauge("cards", scored_metrics),
        "pending scores held (gauge)": gauge("pending_scores", scored_metrics),
        "terminals held (gauge)": gauge("terminals", scored_metrics),
        "state dir MB at end of scoring": round(state_bytes / MB, 1),
        **{f"checkpoint {name} (scoring)": value for name, value in checkpoint_figures(scoring).items()},
        "checkpoint pause max s (whole run)": max((e["seconds"] for e in checkpoints), default=float("nan")),
        "batches (begin..commit histogram count)": batches,
        "batches > 1 s (histogram)": batches - within,
        "longest batch s (histogram bound)": _top_bucket(buckets),
        "longest CreateTime gap s (approx. max loop pause)": round(long_gaps[0][0], 3)
        if long_gaps
        else float("nan"),
        f"CreateTime gaps > {PAUSE_S} s": len(long_gaps),
        "  their p50 / p99 s": f"{quantile([g[0] for g in long_gaps], 0.5):.3f} / "
        f"{quantile([g[0] for g in long_gaps], 0.99):.3f}",
        "  of which with no checkpoint in them": len(other_gaps),
        "  longest with no checkpoint in it s": round(max(other_gaps, default=float("nan")), 3),
        "longest arrival gap s (reader, approx.)": round(watch.arrival_gap[0], 3),
        "decisions read": watch.count,
        **{f"log {name}": by_event.get(name, 0) for name in FAILURES},
        "log warnings/errors": dict(problems),
        "labels consumed": final_metrics.get('fraud_records_consumed_total{input="labels"}', float("nan")),
        "labels joined (scorer, fraud_labels_joined)": final_metrics.get(
            "fraud_labels_joined_total", float("nan")
        ),
        "labels unknown (fraud_labels_unknown)": final_metrics.get(
            "fraud_labels_unknown_total", float("nan")
        ),
        "labels duplicate": final_metrics.get("fraud_labels_duplicate_total", float("nan")),
        "labels invalid": final_metrics.get("fraud_labels_invalid_total", float("nan")),
        "pending expired (fraud_labels_expired)": final_metrics.get(
            "fraud_labels_expired_total", float("nan")
        ),
        "labels joined (learner, checkpoint)": stats.get("labels_joined", 0),
        "labels unjoined (learner, checkpoint)": stats.get("labels_unjoined", 0),
        "pending expired (learner, checkpoint)": stats.get("pending_expired", 0),
        "model labels learned (gauge)": final_metrics.get("fraud_model_labels_learned", float("nan")),
        "first run exit code": exit_code,
        "first run failure": failure or "none",
        "dead letters": sum(v for k, v in final_metrics.items() if k.startswith("fraud_dead_letters_total")),
    }
    gaps = [
        {
            "gap s": round(gap, 3),
            "after decision": count,
            "checkpoints within (their seconds)": checkpoints_in(start, gap),
        }
        for gap, start, count in long_gaps[:10]
    ]
    print_table("longest intervals between consecutive decisions' CreateTime (input backlogged)", gaps)
    print_table("restore", restores)
    print_table("state bench", [{"figure": name, "value": value} for name, value in summary.items()])
    write_json(
        args.json,
        "state",
        [summary],
        settings=shown,
        restores=restores,
        gaps=gaps,
        all_gaps=[(round(gap, 4), count) for gap, _, count in long_gaps],
        events=dict(by_event),
        learner_stats=stats,
        rss=memory.samples,
    )


def _top_bucket(buckets: dict[str, float]) -> str:
    """The lowest bucket bound holding every batch: the histogram's bound on the longest one."""
    bounds = sorted(
        (float(name.split('le="')[1].rstrip('"}')), count)
        for name, count in buckets.items()
        if 'le="' in name
    )
    total = bounds[-1][1] if bounds else 0
    for bound, count in bounds:
        if count >= total:
            return f"<= {bound:g}"
    return "n/a"


if __name__ == "__main__":
    main()
