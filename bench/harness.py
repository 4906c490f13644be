"""What the Kafka benchmarks share: a broker, topics, a simulated stream, and an in-process service."""

from __future__ import annotations

import cProfile
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from detector.engine.config import EngineConfig
from detector.engine.records import Label, Transaction
from detector.service.app import DetectorService
from detector.service.settings import ServiceSettings
from devbroker import LocalKafka
from producers.config import preset
from producers.simulator import SimulatedTransaction, simulate


@contextmanager
def kafka_broker() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker for the duration of the benchmark."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with LocalKafka() as broker:
        yield broker.bootstrap_servers


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
            for processor in list(self.service.processors.values())
            for name, count in processor.counts.items()
            if name.startswith("decision_")
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
