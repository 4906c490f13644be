"""Prometheus metrics of the learner process, counted for what its Kafka transactions committed."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from detector.service.registry import kafka_transactions_counter, process_registry

# The learner's own label counts (engine/learner.py), over its state's lifetime, as of the last commit.
LEARNER_COUNTERS = {
    "labels_joined": (
        "fraud_learner_labels_joined",
        "labels joined to the features they were scored with, and learned",
    ),
    "labels_unjoined": (
        "fraud_learner_labels_unjoined",
        "labels whose scored features were no longer held: not learned",
    ),
    "pending_expired": (
        "fraud_learner_scores_expired",
        "scored features whose label never came within the horizon",
    ),
}


class LearnerMetrics(Collector):
    """What ``fraud-detector learn`` exports; the figures of a transaction are added once it commits."""

    def __init__(self) -> None:
        self.registry = registry = process_registry()
        self._stats: dict[str, int] = {}
        registry.register(self)
        self.transactions = kafka_transactions_counter(registry)
        self.updates = Counter(
            "fraud_learner_update_records",
            "shared-update records read in committed transactions, by scorer partition",
            ["partition"],
            registry=registry,
        )
        self.epochs = Counter(
            "fraud_learner_epochs_applied", "epochs applied and published as versions", registry=registry
        )
        self.version = Gauge("fraud_learner_version", "the last epoch applied", registry=registry)
        self.generation = Gauge("fraud_model_generation", "model in force", registry=registry)
        self.learned = Gauge(
            "fraud_model_labels_learned", "labels the model in force has learned", registry=registry
        )
        self.batch_seconds = Histogram(
            "fraud_batch_duration_seconds",
            "from the start of a Kafka transaction to its commit: applying epochs and commit",
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "fraud_checkpoint_age_seconds", "since the learner's last committed checkpoint", registry=registry
        )
        self.checkpoint_age.set_function(lambda: time.time() - self._checkpointed_at)
        self._checkpointed_at = time.time()
        self._pending_updates: dict[int, int] = {}
        self._pending_epochs = 0
        self._began = time.perf_counter()

    def began(self) -> None:
        self._began = time.perf_counter()
        self._pending_updates, self._pending_epochs = {}, 0

    def consumed(self, partition: int) -> None:
        self._pending_updates[partition] = self._pending_updates.get(partition, 0) + 1

    def applied(self, epochs: int) -> None:
        self._pending_epochs += epochs

    def committed(
        self, version: int, generation: int, labels_learned: int, checkpointed: bool, stats: Mapping[str, int]
    ) -> None:
        self.transactions.labels("committed").inc()
        self._stats = {stat: stats.get(stat, 0) for stat in LEARNER_COUNTERS}
        self.batch_seconds.observe(time.perf_counter() - self._began)
        for partition, count in self._pending_updates.items():
            self.updates.labels(str(partition)).inc(count)
        self.epochs.inc(self._pending_epochs)
        self.version.set(version)
        self.generation.set(generation)
        self.learned.set(labels_learned)
        if checkpointed:
            self._checkpointed_at = time.time()

    def aborted(self) -> None:
        self.transactions.labels("aborted").inc()

    def collect(self) -> Iterator[Metric]:
        """The learner's label counts as of its last commit (lifetime of its state)."""
        for stat, (name, meaning) in LEARNER_COUNTERS.items():
            family = CounterMetricFamily(name, f"{meaning} (state lifetime)")
            family.add_metric([], self._stats.get(stat, 0))
            yield family
