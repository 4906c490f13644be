"""What the Kafka benchmarks share beyond the dev kit: a broker whose process may be measured, the
service in-process, CPU time of processes, and the bare engine's rate to compare the service with."""

from __future__ import annotations

import cProfile
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.records import Label, Transaction
from detector.service.app import DetectorService
from detector.service.partition import Kind
from detector.service.settings import ServiceSettings
from devbroker import LocalKafka
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.settings import unique_settings
from devkit.streams import simulated_stream
from devkit.topics import create_input_topics


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
    settings = unique_settings(bootstrap)
    items = simulated_stream(transactions, cards=1_000, seed=2)
    create_input_topics(settings, partitions=1)
    publish(settings, items)
    with RunningService(settings, EngineConfig()) as running:
        running.wait_ready()
        running.wait_decisions(sum(isinstance(item, Transaction) for item in items))


def gc_free_seconds(action: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds to run ``action`` with no garbage-collector pass in between, as in the service, whose
    collector only walks what each batch allocated (``detector.service.collector``); any collector
    pause is thereby charged to the service, never to what it is compared with. ``clock``:
    ``time.process_time`` for CPU seconds, which other work on a shared machine does not inflate."""
    gc.collect()
    gc.disable()
    try:
        started = clock()
        action()
        return clock() - started
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
        if time.monotonic() > deadline or not all(service.alive() for service in services):
            raise RuntimeError(f"the service instances did not take all {partitions} partitions: {owned}")
        time.sleep(0.1)
