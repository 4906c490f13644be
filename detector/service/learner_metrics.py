"""Prometheus metrics of the learner process, counted for what its Kafka transactions committed."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from detector.service.registry import kafka_transactions_counter, process_registry


class LearnerMetrics:
    """What ``fraud-detector learn`` exports; the figures of a transaction are added once it commits."""

    def __init__(self) -> None:
        self.registry = registry = process_registry()
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

    def committed(self, version: int, generation: int, labels_learned: int, checkpointed: bool) -> None:
        self.transactions.labels("committed").inc()
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
