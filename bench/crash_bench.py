"""Benchmark: the service under a crash loop, SIGKILLed every 10-30 s at random, with one broker restart.

What: paced input (``--rate`` transactions a second, their labels between them) to one service
instance on ``--partitions`` partitions, killed with SIGKILL at random intervals
(``--kill-min``..``--kill-max`` s) and restarted at once; half-way through, the broker is stopped
and started again instead of a kill. At the end the service is stopped (SIGTERM) and the audit
topic is read back. Printed:

* undecided (lost, if the run finished; else not decided before it gave up) and duplicated
  decisions (audit decision records per published transaction), and whether
  every partition's hash chain verifies;
* for each process start, the seconds to the first new decision readable downstream;
* decision latency p50 / p99 / max, to the decision readable (``read_committed``) from the publish
  call, and from the broker's acknowledgement of the transaction (while the broker is down, a
  transaction is not in Kafka yet: the publisher's client holds it until the broker is back);
* the timeline: starts, kills, the broker restart and the first decision after each start.

The figures depend on the service's settings (defaults here, as deployed: 60 s checkpoints).

    python bench/crash_bench.py                          # 100k transactions, 3 partitions
    python bench/crash_bench.py --transactions 30000 --rate 300
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from confluent_kafka import Producer
from report import print_table, quantile, write_json

from detector.audit.verify import verify_messages
from detector.engine.records import Label, Transaction
from devbroker import LocalKafka
from devkit.process import ServiceProcess
from devkit.reading import ArrivalReader, CommittedReader
from devkit.settings import settings_env, unique_settings
from devkit.streams import simulated_stream
from devkit.topics import create_service_topics
from producers.pacing import RatePacer


class PacedPublisher(threading.Thread):
    """Publishes the stream at a fixed transaction rate, noting when each transaction was sent."""

    def __init__(self, bootstrap: str, settings: Any, items: list[Transaction | Label], rate: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.items, self.settings, self.rate = items, settings, rate
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.sent: dict[bytes, float] = {}
        self.acked: dict[bytes, float] = {}  # when the broker acknowledged the transaction
        self.failures: list[str] = []

    def run(self) -> None:
        pacer = RatePacer(self.rate)
        for item in self.items:
            transaction_id = None
            if isinstance(item, Transaction):
                pacer.wait(0.0)
                topic = self.settings.transactions_topic
                transaction_id = item.transaction_id.encode()
                self.sent[transaction_id] = time.time()
            else:
                topic = self.settings.labels_topic
            delivered = partial(self._delivered, transaction_id)
            while True:
                try:
                    self.producer.produce(
                        topic, item.to_json(), key=item.customer_id.encode(), on_delivery=delivered
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        while self.producer.flush(1.0):
            pass

    def _delivered(self, transaction_id: bytes | None, error: object, _: object) -> None:
        if error is not None:
            self.failures.append(str(error))
        elif transaction_id is not None:
            self.acked[transaction_id] = time.time()


class Timeline:
    def __init__(self) -> None:
        self.origin = time.time()
        self.events: list[dict[str, Any]] = []

    def note(self, event: str, at: float | None = None, **details: Any) -> None:
        entry = {"t_s": round((at or time.time()) - self.origin, 2), "event": event, **details}
        self.events.append(entry)
        print(f"  {entry['t_s']:8.2f}s  {event} {details or ''}", flush=True)


def _latencies(since: dict[bytes, float], arrived: dict[bytes | None, float]) -> list[float]:
    """Seconds from each transaction's moment in ``since`` to its decision's arrival downstream."""
    return [arrived[key] - at for key, at in since.items() if key in arrived]


def _audit_decisions(bootstrap: str, topic: str) -> tuple[dict[str, int], bool, list[str]]:
    """Decision records per transaction id, whether every chain verifies, and the verifier's lines."""
    reader = CommittedReader(bootstrap, topic)
    reader.drain_to_end(120)
    counts: dict[str, int] = {}
    triples = []
    for partition, records in reader.records.items():
        for offset, value, _ in records:
            triples.append((partition, offset, value))
            record = orjson.loads(value)
            if record.get("record_type") == "decision":
                counts[record["transaction_id"]] = counts.get(record["transaction_id"], 0) + 1
    reader.close()
    verification = verify_messages(triples, partitions=reader.records)
    return counts, verification.ok, verification.summary_lines()


def _start_phases(service: ServiceProcess, started: float) -> dict[str, float | None]:
    """Seconds from a process's spawn to its start-up log line, its assignment and the end of its
    recovery, from its log (None: killed before it)."""
    names = {"starting": "started s", "partitions_assigned": "assigned s", "recovery_done": "recovered s"}
    phases: dict[str, float | None] = dict.fromkeys(names.values())
    for entry in service.log_events():
        name = names.get(entry.get("event", ""))
        if name is not None and phases[name] is None:
            phases[name] = datetime.fromisoformat(entry["timestamp"]).timestamp() - started
    return phases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--cards", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="transactions published a second")
    parser.add_argument("--kill-min", type=float, default=10.0)
    parser.add_argument("--kill-max", type=float, default=30.0)
    parser.add_argument("--broker-down-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="most seconds after publishing ends")
    parser.add_argument("--log-dir", default="out/bench/logs")
    parser.add_argument("--json", default="out/bench/crash.json")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    items = simulated_stream(args.transactions, args.cards)
    print(f"stream: {args.transactions:,} transactions, {len(items) - args.transactions:,} labels")
    with LocalKafka() as broker:
        settings = unique_settings(broker.bootstrap_servers)
        create_service_topics(settings, args.partitions)
        env = settings_env(settings.replaced(instance_id="crash-1"))
        log = Path(args.log_dir) / f"{settings.group_id}.log"
        timeline = Timeline()
        arrivals = ArrivalReader(broker.bootstrap_servers, settings.decisions_topic)
        publisher = PacedPublisher(broker.bootstrap_servers, settings, items, args.rate)
        starts: list[float] = []

        processes: list[ServiceProcess] = []

        def start() -> ServiceProcess:
            starts.append(time.time())
            timeline.note("process_started")
            processes.append(ServiceProcess(env, log.with_suffix(f".{len(starts)}.log")))
            return processes[-1]

        service = start()
        publisher.start()
        timeline.note("publishing_started")
        kills = 0
        broker_restarted = False
        expected_kills = args.transactions / args.rate / ((args.kill_min + args.kill_max) / 2)
        deadline = None
        while len(arrivals.arrived) < args.transactions:
            if deadline is None and not publisher.is_alive():
                deadline = time.monotonic() + args.timeout
                timeline.note("publishing_ended")
            if deadline is not None and time.monotonic() > deadline:
                timeline.note("gave_up", decided=len(arrivals.arrived))
                break
            pause = rng.uniform(args.kill_min, args.kill_max)
            waited = time.monotonic() + pause
            while time.monotonic() < waited and len(arrivals.arrived) < args.transactions:
                time.sleep(0.1)
            if len(arrivals.arrived) >= args.transactions:
                break
            if not broker_restarted and kills >= expected_kills / 2:
                broker_restarted = True
                timeline.note("broker_stopped")
                broker.stop()
                timeline.note("broker_down")  # a clean shutdown takes a while
                time.sleep(args.broker_down_s)
                broker.start()
                timeline.note("broker_started")
                continue
            service.kill()
            kills += 1
            timeline.note("sigkill", decided=len(arrivals.arrived))
            service = start()
        finished = len(arrivals.arrived) >= args.transactions
        exit_code = service.stop()
        timeline.note("stopped", exit_code=exit_code)
        arrivals.close()

        # first decisions after each start, and latency, from the downstream reader's arrival times
        arrived = sorted(arrivals.arrived.values())
        ends = [*starts[1:], float("inf")]
        first_after: list[float | None] = []
        for index, (started, ended) in enumerate(zip(starts, ends, strict=True)):
            first = next((at for at in arrived if started <= at < ended), None)
            first_after.append(None if first is None else first - started)
            if first is not None:
                timeline.note("first_decision", at=first, start=index + 1, after_s=round(first - started, 2))
        phases = [_start_phases(process, started) for process, started in zip(processes, starts, strict=True)]
        timeline.events.sort(key=lambda entry: entry["t_s"])
        latencies = _latencies(publisher.sent, arrivals.arrived)
        from_ack = _latencies(publisher.acked, arrivals.arrived)
        counts, chains_ok, chain_lines = _audit_decisions(broker.bootstrap_servers, settings.audit_topic)

    sent_ids = {key.decode() for key in publisher.sent}
    undecided = len(sent_ids - set(counts))  # lost if the run finished, else not decided in time
    duplicated = sum(1 for count in counts.values() if count > 1)
    measured = [value for value in first_after if value is not None]
    row = {
        "transactions": args.transactions,
        "kills": kills,
        "broker restarts": int(broker_restarted),
        "finished": finished,
        "undecided": undecided,
        "duplicated": duplicated,
        "chains verify": chains_ok,
        "starts": len(starts),
        "starts with no decision": len(starts) - len(measured),
        "first decision max s": max(measured, default=float("nan")),
        "first decision median s": quantile(measured, 0.5),
        "latency p50 s": quantile(latencies, 0.5),
        "latency p99 s": quantile(latencies, 0.99),
        "latency max s": max(latencies, default=float("nan")),
        "latency from ack p50 s": quantile(from_ack, 0.5),
        "latency from ack p99 s": quantile(from_ack, 0.99),
        "latency from ack max s": max(from_ack, default=float("nan")),
        "exit code": exit_code,
    }
    print_table("timeline", timeline.events)
    per_start = [
        {
            "start": index + 1,
            "lived s": (ends[index] - starts[index]) if index + 1 < len(starts) else float("nan"),
            **phases[index],
            "first decision s": value,
        }
        for index, value in enumerate(first_after)
    ]
    print_table("per process start: seconds from the spawn to each step (none: killed before it)", per_start)
    print("\n".join(chain_lines[-4:]))
    print_table("crash loop", [row])
    write_json(args.json, "crash", [row], timeline=timeline.events, starts=per_start)


if __name__ == "__main__":
    main()
