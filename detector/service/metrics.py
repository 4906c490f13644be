"""Prometheus metrics of one detector instance, counted only for what its Kafka transactions committed.

Two kinds of numbers, each from the source that is exact for it:

* What this process emitted (decisions, dead letters, labels accepted, records consumed) comes from
  :attr:`PartitionProcessor.outcomes` and the consumed messages, and is added to the counters only
  once the Kafka transaction holding those outputs has committed. An aborted transaction's records
  are processed again after recovery and counted then; records replayed after a restart (their
  outputs were committed before it) are counted as replayed, never as decisions.
* What a partition's engine has seen over its whole life (labels joined, late, unknown, expired;
  drift and model events) comes from :attr:`DetectionEngine.stats`, which checkpoints carry across
  restarts and replay rebuilds exactly. These are exported as the engine's own totals, copied at
  each commit, so they never count a replayed record twice and never go back after an abort.
  Engine state sizes and the model generation are copied at the same moment, and so is the time of
  each partition's last checkpoint, whose age is computed when scraped.

Decisions by outcome and dead letters by reason exist at 0 for every owned partition from its
assignment, so a rate or an alert on them reads zero rather than no data; those still at zero are
removed when the partition goes. The process's CPU, memory and open files (``process_*``) and the
build (``fraud_build_info``) are served from the same registry.

Each instance has its own :class:`CollectorRegistry`, so several services can run in one process.
"""

from __future__ import annotations

import json
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message, TopicPartition
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from detector.engine.policy import OUTCOMES
from detector.service.engine_setup import engine_gauges
from detector.service.partition import Kind, Outcome, PartitionProcessor
from detector.service.registry import kafka_transactions_counter, process_registry
from detector.service.topic_map import TRANSACTIONS, TopicMap

# Engine stats exported as per-partition counters: stat -> (metric name without _total, help).
ENGINE_COUNTERS = {
    "labels_queued": ("fraud_labels_queued", "labels held until event time passed them"),
    "labels_late": ("fraud_labels_late", "labels that came after event time had passed them"),
    "labels_learned": ("fraud_labels_joined", "labels joined to their scored transaction and learned"),
    "labels_unknown": ("fraud_labels_unknown", "labels for a transaction never scored or already expired"),
    "labels_duplicate": ("fraud_labels_duplicate", "second labels for an already labelled transaction"),
    "labels_invalid": ("fraud_labels_invalid", "labels that contradicted their transaction when applied"),
    "pending_expired": ("fraud_labels_expired", "scored transactions whose label never came in time"),
    "transactions_out_of_order": ("fraud_transactions_out_of_order", "transactions older than the watermark"),
    "transactions_future_skew": ("fraud_transactions_future_skew", "transactions far ahead of the watermark"),
    "transactions_too_late": ("fraud_transactions_too_late", "transactions far behind the watermark"),
}
_EVENT_PREFIX = "events_"
STATE_KINDS = ("cards", "terminals", "pending_scores", "queued_labels")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))
LAG_INTERVAL_S = 1.0


def dead_letter_reasons() -> tuple[str, ...]:
    """Every dead-letter reason, as the wire contract's schema lists them (its tests hold it to the code)."""
    schema = json.loads((resources.files("detector") / "schemas" / "dead-letter.schema.json").read_text())
    return tuple(schema["properties"]["headers"]["properties"]["dlq.reason"]["enum"])


DEAD_LETTER_REASONS = dead_letter_reasons()


@dataclass(frozen=True)
class EngineTotals:
    """A partition's engine figures as of its last commit."""

    stats: dict[str, int]
    gauges: dict[str, Any]


@dataclass
class _Pending:
    """What the open Kafka transaction holds, to be counted once it commits."""

    consumed: Tally[tuple[str, int]] = field(default_factory=Tally)
    timestamps: list[float] = field(default_factory=list)  # Kafka times (s) of the transactions answered


class ServiceMetrics(Collector):
    """The metrics one :class:`~detector.service.app.DetectorService` records; served from ``registry``."""

    def __init__(self) -> None:
        self.registry = process_registry()
        registry = self.registry
        self.consumed = Counter(
            "fraud_records_consumed",
            "input records read in committed transactions, replays after a restart included",
            ["input", "partition"],
            registry=registry,
        )
        self.replayed = Counter(
            "fraud_records_replayed",
            "input records processed again after a restart to rebuild state, with no output",
            ["partition"],
            registry=registry,
        )
        self.decisions = Counter(
            "fraud_decisions", "decisions committed, by outcome", ["outcome", "partition"], registry=registry
        )
        self.dead_letters = Counter(
            "fraud_dead_letters",
            "input refused and dead-lettered, by reason",
            ["reason", "partition"],
            registry=registry,
        )
        self.labels_received = Counter(
            "fraud_labels_received", "valid labels accepted", ["partition"], registry=registry
        )
        self.transactions = kafka_transactions_counter(registry)
        self.batch_seconds = Histogram(
            "fraud_batch_duration_seconds",
            "from the start of a Kafka transaction to its commit: processing and commit",
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "fraud_commit_duration_seconds",
            "sending the input offsets and committing the Kafka transaction",
            registry=registry,
        )
        self.latency = Histogram(
            "fraud_end_to_end_latency_seconds",
            "from a transaction's Kafka timestamp to the commit of its decision or dead letter",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        registry.register(self)
        self._pending = _Pending()
        self._began = time.perf_counter()
        self._counted: dict[int, tuple[PartitionProcessor, Tally[Outcome]]] = {}  # partition -> outcomes seen
        self._engines: dict[int, EngineTotals] = {}
        self._checkpoints: dict[int, float] = {}  # partition -> epoch seconds of its last committed one
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_updated = float("-inf")

    # -- the transactional loop -----------------------------------------------------------------

    def began(self) -> None:
        self._began = time.perf_counter()

    def consumed_record(self, role: str, message: Message, emitted: bool) -> None:
        """One input record in the open transaction; ``emitted`` when it produced outputs (no replay)."""
        partition = message.partition()
        assert partition is not None, "a record consumed without error has its partition"
        self._pending.consumed[(role, partition)] += 1
        if emitted and role == TRANSACTIONS:
            kind, milliseconds = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                self._pending.timestamps.append(milliseconds / 1000.0)

    def owned(self, partition: int, checkpoint_written_at: float | None) -> None:
        """A partition assigned or recovered here: its outcome series exist from now on, at 0 if new."""
        label = str(partition)
        for outcome in OUTCOMES:
            self.decisions.labels(outcome, label)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason, label)
        if checkpoint_written_at is not None:
            self._checkpoints[partition] = checkpoint_written_at

    def committed(
        self,
        processors: Mapping[int, PartitionProcessor],
        commit_started: float,
        checkpoint_times: Mapping[int, float] | None = None,
    ) -> None:
        """Count the committed transaction's records and copy each engine's totals and checkpoint time."""
        now, wall = time.perf_counter(), time.time()
        self.transactions.labels("committed").inc()
        self.batch_seconds.observe(now - self._began)
        self.commit_seconds.observe(now - commit_started)
        for timestamp in self._pending.timestamps:
            self.latency.observe(max(wall - timestamp, 0.0))
        for (role, partition), count in self._pending.consumed.items():
            self.consumed.labels(role, str(partition)).inc(count)
        self._pending = _Pending()
        for partition, processor in processors.items():
            self._count_outputs(partition, processor)
            engine = processor.engine
            view = processor.shared.view if processor.shared is not None else None
            self._engines[partition] = EngineTotals(dict(engine.stats), engine_gauges(engine, view))
        self._checkpoints.update(checkpoint_times or {})

    def aborted(self) -> None:
        """The open transaction's records will be processed again after recovery: count them then."""
        self.transactions.labels("aborted").inc()
        self._pending = _Pending()

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this instance no longer owns stop being reported here; what it emitted stays."""
        gone = {str(partition) for partition in partitions}
        for counter in (self.decisions, self.dead_letters):
            (family,) = counter.collect()
            for sample in family.samples:
                if (
                    sample.labels.get("partition") in gone
                    and sample.name.endswith("_total")
                    and not sample.value
                ):
                    counter.remove(*sample.labels.values())
        for partition in partitions:
            self._counted.pop(partition, None)
            self._engines.pop(partition, None)
            self._checkpoints.pop(partition, None)
            for key in [key for key in self._lag if key[1] == partition]:
                del self._lag[key]

    def update_lag(
        self, consumer: Consumer, processors: Mapping[int, PartitionProcessor], topics: TopicMap
    ) -> None:
        """Records behind the high watermark per input partition, at most once a second.

        The watermarks are those the consumer's last fetch brought back, so this costs no request.
        """
        if time.monotonic() - self._lag_updated < LAG_INTERVAL_S:
            return
        self._lag_updated = time.monotonic()
        for partition, processor in processors.items():
            for role, position in processor.positions.items():
                watermarks = consumer.get_watermark_offsets(
                    TopicPartition(topics.name(role), partition), cached=True
                )
                if watermarks is not None and watermarks[1] >= 0:
                    self._lag[(role, partition)] = max(watermarks[1] - position, 0)

    def _count_outputs(self, partition: int, processor: PartitionProcessor) -> None:
        """Add what ``processor`` counted since the last commit; a new processor counts from zero."""
        previous, seen = self._counted.get(partition, (None, Tally()))
        if previous is not processor:
            seen = Tally()
        label = str(partition)
        for (kind, detail), added in (processor.outcomes - seen).items():
            if kind is Kind.DECISION:
                self.decisions.labels(detail, label).inc(added)
            elif kind is Kind.REJECTED:
                self.dead_letters.labels(detail, label).inc(added)
            elif kind is Kind.LABEL:
                self.labels_received.labels(label).inc(added)
            else:
                self.replayed.labels(label).inc(added)
        self._counted[partition] = (processor, Tally(processor.outcomes))

    # -- exposition (called from the HTTP server's thread) --------------------------------------

    def collect(self) -> Iterator[Metric]:
        """Engine totals, state sizes and lag of the partitions owned now."""
        engines = list(self._engines.items())
        counters = {
            stat: CounterMetricFamily(name, f"{meaning} (partition lifetime)", labels=["partition"])
            for stat, (name, meaning) in ENGINE_COUNTERS.items()
        }
        events = CounterMetricFamily(
            "fraud_engine_events",
            "drift signals and model changes, by kind (partition lifetime)",
            labels=["kind", "partition"],
        )
        state = GaugeMetricFamily(
            "fraud_engine_state_entries",
            "entries held in engine state, by kind",
            labels=["kind", "partition"],
        )
        generation = GaugeMetricFamily(
            "fraud_model_generation", "model in force: 1, plus one per swap or reset", labels=["partition"]
        )
        learned = GaugeMetricFamily(
            "fraud_model_labels_learned", "labels the model in force has learned", labels=["partition"]
        )
        for partition, totals in engines:
            label = str(partition)
            for stat, family in counters.items():
                family.add_metric([label], totals.stats.get(stat, 0))
            for stat, count in totals.stats.items():
                if stat.startswith(_EVENT_PREFIX):
                    events.add_metric([stat.removeprefix(_EVENT_PREFIX), label], count)
            for kind in STATE_KINDS:
                state.add_metric([kind, label], totals.gauges[kind])
            generation.add_metric([label], totals.gauges["model_generation"])
            learned.add_metric([label], totals.gauges["labels_learned"])
        lag = GaugeMetricFamily(
            "fraud_consumer_lag", "input records not yet read, by input", labels=["input", "partition"]
        )
        for (role, partition), behind in list(self._lag.items()):
            lag.add_metric([role, str(partition)], behind)
        now = time.time()
        checkpoint_age = GaugeMetricFamily(
            "fraud_checkpoint_age_seconds",
            "since the partition's last committed checkpoint was written",
            labels=["partition"],
        )
        for partition, written_at in list(self._checkpoints.items()):
            checkpoint_age.add_metric([str(partition)], max(now - written_at, 0.0))
        yield from counters.values()
        yield from (events, state, generation, learned, lag, checkpoint_age)
