"""What the Kafka benchmarks share: a broker, topics, a simulated stream, the service in-process or as
child processes, a read_committed reader of the decisions topic, CPU time of processes, and the
bare engine's rate to compare the service with."""

from __future__ import annotations

import cProfile
import dataclasses
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.records import Label, Transaction
from detector.service.app import DetectorService
from detector.service.partition import Kind
from detector.service.settings import ServiceSettings
from detector.service.topics import topic_configs
from devbroker import LocalKafka
from producers.config import preset
from producers.simulator import SimulatedTransaction, simulate


class Broker(NamedTuple):
    """Where the broker answers, and its pid when this run started it (else its CPU is not ours to read)."""

    bootstrap: str
    pid: int | None


@contextmanager
def kafka_broker_process() -> Iterator[Broker]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker, stopped at the end even on error."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"], None)
        return
    with LocalKafka() as broker:
        yield Broker(broker.bootstrap_servers, broker.pid)


@contextmanager
def kafka_broker() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker for the duration of the benchmark."""
    with kafka_broker_process() as broker:
        yield broker.bootstrap


def simulated_stream(transactions: int, cards: int, seed: int = 1) -> list[Transaction | Label]:
    base = preset("default")
    config = replace(
        base,
        seed=seed,
        days=None,
        max_transactions=transactions,
        population=replace(base.population, cards=cards, terminals=max(cards // 10, 10)),
    )
    return [item.transaction if isinstance(item, SimulatedTransaction) else item for item in simulate(config)]


def service_settings(bootstrap: str, prefix: str | None = None, **overrides: object) -> ServiceSettings:
    prefix = prefix or f"bench-{uuid.uuid4().hex[:8]}"
    names = {
        "transactions_topic": f"{prefix}.transactions",
        "labels_topic": f"{prefix}.labels",
        "audit_topic": f"{prefix}.audit",
        "decisions_topic": f"{prefix}.decisions",
        "dead_letter_topic": f"{prefix}.dead-letter",
        "checkpoint_topic": f"{prefix}.checkpoints",
        "group_id": f"{prefix}-group",
    }
    return replace(ServiceSettings(bootstrap_servers=bootstrap, metrics_port=0), **names, **overrides)


def create_input_topics(settings: ServiceSettings, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    topics = [NewTopic(name, partitions, 1) for name in (settings.transactions_topic, settings.labels_topic)]
    for future in admin.create_topics(topics).values():
        future.result()


def create_service_topics(settings: ServiceSettings, partitions: int, timeout: float = 60.0) -> None:
    """Every topic the service uses, as it would create them, and a wait until each partition answers.

    A service that creates its own topics reads them at once, while the broker may still be creating
    them or electing their leaders; creating them beforehand keeps that start-up out of every run.
    """
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    configs = topic_configs(settings)
    new = [NewTopic(name, partitions, 1, config=config) for name, config in configs.items()]
    for future in admin.create_topics(new).values():
        future.result()
    probe = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-probe"})
    deadline = time.monotonic() + timeout
    try:
        for topic in configs:
            for partition in range(partitions):
                while True:
                    try:
                        probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                        break
                    except KafkaException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
    finally:
        probe.close()


def publish(settings: ServiceSettings, items: list[Transaction | Label]) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "linger.ms": 20}
    )
    for item in items:
        topic = settings.transactions_topic if isinstance(item, Transaction) else settings.labels_topic
        while True:
            try:
                producer.produce(topic, item.to_json(), key=item.customer_id.encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("not every benchmark record was delivered")


class RunningService:
    """A :class:`DetectorService` in a thread of this process, so its progress can be watched directly."""

    def __init__(
        self, settings: ServiceSettings, engine_config: EngineConfig, profiler: cProfile.Profile | None = None
    ) -> None:
        self.service = DetectorService(settings, engine_config, environ={})
        target = self.service.run if profiler is None else lambda: profiler.runcall(self.service.run)
        self._thread = threading.Thread(target=target, name="detector", daemon=True)

    def __enter__(self) -> RunningService:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.service.stop()
        self._thread.join(120)

    def decisions(self) -> int:
        return sum(
            count
            for processor in self.service.partitions.processors().values()
            for outcome, count in list(processor.outcomes.items())
            if outcome.kind is Kind.DECISION
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.service.ready:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the service did not become ready")
            time.sleep(0.05)

    def wait_decisions(self, count: int, timeout: float = 600.0) -> None:
        """Until ``count`` decisions are processed and the transaction holding them is committed."""
        deadline = time.monotonic() + timeout
        while self.decisions() < count:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"only {self.decisions()} of {count} decisions")
            time.sleep(0.01)
        committed = self.service.transactions_committed
        while self.service.transactions_committed <= committed:
            time.sleep(0.005)


def warm_up_broker(bootstrap: str, transactions: int = 5_000) -> None:
    """A discarded service run on its own topics: a fresh broker's JVM is several times slower at
    transactions and fetches until its JIT has compiled them, which would weigh on the first run."""
    settings = service_settings(bootstrap)
    items = simulated_stream(transactions, cards=1_000, seed=2)
    create_input_topics(settings, partitions=1)
    publish(settings, items)
    with RunningService(settings, EngineConfig()) as running:
        running.wait_ready()
        running.wait_decisions(sum(isinstance(item, Transaction) for item in items))


def gc_free_seconds(action: Callable[[], object]) -> float:
    """Seconds to run ``action`` with no garbage-collector pass in between, as in the service, whose
    collector only walks what each batch allocated (``detector.service.collector``); any collector
    pause is thereby charged to the service, never to what it is compared with."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        action()
        return time.perf_counter() - started
    finally:
        gc.enable()


def engine_rate(items: list[Transaction | Label], config: EngineConfig) -> float:
    """The bare engine at its fastest: no garbage-collector pass at all during the run (the engine
    creates no reference cycles), so the ratio charges every collector pause to the service."""
    engine = DetectionEngine(config)

    def run() -> None:
        for item in items:
            if isinstance(item, Transaction):
                engine.process_transaction(item)
            else:
                engine.process_label(item)
            engine.pop_events()

    elapsed = gc_free_seconds(run)
    return sum(isinstance(item, Transaction) for item in items) / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from ``/proc/<pid>/stat`` (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_MACHINE = ("machine", "stolen")


def cpu_sample(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process, of the whole machine (every core) as "machine",
    and the time the hypervisor gave this machine's cores to other machines as "stolen"."""
    sample = {name: cpu_seconds(pid) for name, pid in pids.items()}
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    ticks = os.sysconf("SC_CLK_TCK")
    sample["machine"] = (user + nice + system + irq + softirq) / ticks
    sample["stolen"] = steal / ticks
    return sample


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds between two samples of each process, of everything else on this machine
    ("others": other people's work on the same cores), and "stolen" by the hypervisor: both are
    the noise of the measurement, and stolen time slows every process of the run."""
    used = {name: after[name] - before[name] for name in before if name not in _MACHINE}
    used["others"] = after["machine"] - before["machine"] - sum(used.values())
    used["stolen"] = after["stolen"] - before["stolen"]
    return used


def settings_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment that makes ``fraud-detector run`` use exactly ``settings``."""
    return {spec.metadata["env"]: str(getattr(settings, spec.name)) for spec in dataclasses.fields(settings)}


class ServiceProcess:
    """``python -m detector.cli run`` as a child process: its own interpreter and GIL, as deployed.

    Its JSON log goes to ``log_path``; partition assignment and recovery are read back from it.
    """

    def __init__(self, settings: ServiceSettings, log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "detector.cli", "run"],
                env={**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"},  # its log is read live
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, name: str | None = None) -> list[dict]:
        """Log entries so far, all of them or those whose ``event`` is ``name``."""
        entries = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and (name is None or entry.get("event") == name):
                entries.append(entry)
        return entries

    def ready_partitions(self) -> set[int]:
        """Partitions assigned to this instance and recovered since, as its log tells."""
        owned: set[int] = set()
        recovering: set[int] = set()
        for entry in self.events():
            event = entry.get("event")
            if event == "partitions_assigned":
                owned = set(entry["partitions"])
                recovering = set(owned)
            elif event in ("partitions_revoked", "partitions_lost"):
                owned -= set(entry["partitions"])
            elif event == "partition_recovered":
                recovering.discard(entry["partition"])
        return owned - recovering

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (checkpoint, leave the group) and wait; SIGKILL only if it does not end in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until_assigned(services: Sequence[ServiceProcess], partitions: int, timeout: float = 120.0) -> None:
    """Until the instances own every input partition between them, each once, all recovered, and each
    instance owns some (with no more instances than partitions), so no rebalance is still to come."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [service.ready_partitions() for service in services]
        if (
            all(owned)
            and sum(map(len, owned)) == partitions
            and set().union(*owned) == set(range(partitions))
        ):
            return
        if time.monotonic() > deadline or any(service.process.poll() is not None for service in services):
            raise RuntimeError(f"the service instances did not take all {partitions} partitions: {owned}")
        time.sleep(0.1)


class DecisionReader:
    """Reads the decisions topic as a payment system would (read_committed), noting when each arrived.

    ``received`` maps the record key (the transaction id) to the wall time (``time.time()``) of its
    first arrival, and ``created`` to the record's Kafka timestamp (CreateTime: when the service
    produced it inside its transaction), both in seconds, so the two can be compared.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        topic = settings.decisions_topic
        partitions = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.received: dict[bytes, float] = {}
        self.created: dict[bytes, float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="decision-reader", daemon=True)

    def __enter__(self) -> DecisionReader:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join(30)
        self._consumer.close()

    def _read(self) -> None:
        received, created = self.received, self.created
        while not self._stopping.is_set():
            # poll() returns as soon as a record is readable (consume() would wait out its timeout
            # and add up to that wait to every latency); the rest of the fetch is taken at once.
            first = self._consumer.poll(0.05)
            if first is None:
                continue
            arrived = time.time()  # one reading per fetch: its records became readable together
            for message in [first, *self._consumer.consume(1000, 0)]:
                if message.error() is None and message.key() not in received:
                    received[message.key()] = arrived
                    created[message.key()] = message.timestamp()[1] / 1000.0

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether ``count`` distinct decisions arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
