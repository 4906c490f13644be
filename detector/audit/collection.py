"""What the audit report reads: each decision's fields as columns, model events whole, and the
latest label of each transaction.

Whole feature vectors are kept only for the transactions asked for (``explain``: the frauds, when
labels are read first), since a topic holds millions of decisions; for the others each feature's
mean and spread are accumulated, which is what tells an analyst which features stood out.

A record that is not the detector's (not JSON, or a
decision without its fields) is counted as unreadable, not guessed at: ``audit verify`` says more.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.audit.reader import TopicMessage
from detector.audit.records import DECISION, FeatureSchemas, decode_record
from detector.audit.selection import RecordFilter, event_time, field_value
from detector.engine.records import InvalidInput, decode_label


@dataclass
class Labels:
    """The latest known outcome of each transaction (by label time), and how many labels were unusable."""

    outcomes: dict[str, bool] = field(default_factory=dict)
    invalid: int = 0
    _times: dict[str, float] = field(default_factory=dict)

    def add(self, value: bytes | None) -> None:
        try:
            label = decode_label(value or b"")
        except InvalidInput:
            self.invalid += 1
            return
        if label.event_time >= self._times.get(label.transaction_id, float("-inf")):
            self._times[label.transaction_id] = label.event_time
            self.outcomes[label.transaction_id] = label.is_fraud

    def frauds(self) -> frozenset[str]:
        return frozenset(t for t, fraud in self.outcomes.items() if fraud)


def read_labels(values: Iterable[bytes | None]) -> Labels:
    labels = Labels()
    for value in values:
        labels.add(value)
    return labels


@dataclass(frozen=True)
class ModelEvent:
    """A drift signal or model change of one partition's engine."""

    time: float
    kind: str
    partition: int
    generation: int
    detail: dict[str, Any]


@dataclass
class FeatureProfile:
    """Running count, sum and sum of squares of each feature over every decision read."""

    sums: dict[str, list[float]] = field(default_factory=dict)

    def add(self, features: dict[str, Any]) -> None:
        for name, value in features.items():
            if isinstance(value, int | float) and math.isfinite(value):
                totals = self.sums.setdefault(name, [0.0, 0.0, 0.0])
                totals[0] += 1
                totals[1] += value
                totals[2] += value * value

    def zscore(self, name: str, value: float) -> float:
        """How many standard deviations ``value`` is from the feature's mean; 0 for a constant feature."""
        count, total, total_sq = self.sums.get(name, (0.0, 0.0, 0.0))
        if count < 2:
            return 0.0
        mean = total / count
        spread = math.sqrt(max(total_sq / count - mean * mean, 0.0))
        return (value - mean) / spread if spread > 1e-12 else 0.0


@dataclass
class AuditCollection:
    """What the report keeps of each audit record: decision fields as columns, events whole."""

    transaction_ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    generations: list[int] = field(default_factory=list)
    processing_ms: list[float] = field(default_factory=list)
    write_lags_s: list[float] = field(default_factory=list)  # audit write (Kafka time) - event time
    amounts: list[float] = field(default_factory=list)
    review_thresholds: list[float] = field(default_factory=list)
    reason_codes: list[tuple[str, ...]] = field(default_factory=list)
    explain: Collection[str] = frozenset()  # transactions whose features are kept whole
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    profile: FeatureProfile = field(default_factory=FeatureProfile)
    thresholds: Counter[tuple[float, float]] = field(default_factory=Counter)
    events: list[ModelEvent] = field(default_factory=list)
    record_types: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0
    schemas: FeatureSchemas = field(default_factory=FeatureSchemas)  # to name decisions' features

    def add(self, message: TopicMessage, keep: RecordFilter) -> None:
        record = decode_record(message.value)
        if record is None:
            self.unreadable += 1
            return
        if self.schemas.note(record) or not keep.matches(record):
            return
        record = self.schemas.expanded(record)
        self.record_types[str(record.get("record_type"))] += 1
        moment = event_time(record)
        if moment is None:
            return  # rejected input: counted, but it has no time and no score
        try:
            self._keep(record, moment, message)
        except (KeyError, TypeError, ValueError):
            self.unreadable += 1  # a decision or event without its fields: not the detector's

    def _keep(self, record: dict[str, Any], moment: float, message: TopicMessage) -> None:
        generation = int(field_value(record, "model.generation") or 0)
        if record["record_type"] != DECISION:
            detail = record.get("detail")
            event = ModelEvent(
                moment,
                record["record_type"],
                message.partition,
                generation,
                detail if isinstance(detail, dict) else {},
            )
            self.events.append(event)
            return
        stamp = message.timestamp_ms
        row = (
            str(record["transaction_id"]),
            moment,
            str(record["customer_id"]),
            float(record["score"]),
            str(record["decision"]),
            message.partition,
            generation,
            float(record.get("processing_ms", np.nan)),
            np.nan if stamp is None else stamp / 1000.0 - moment,
            float(record.get("amount") or 0.0),
            float(record["thresholds"]["review"]),
            tuple(sys.intern(str(code)) for code in record.get("reason_codes") or ()),
        )
        thresholds = (row[-2], float(record["thresholds"]["block"]))
        given = record.get("features")
        features = given if isinstance(given, dict) else {}
        for column, value in zip(self._columns(), row, strict=True):
            column.append(value)
        self.thresholds[thresholds] += 1
        self.profile.add(features)
        if row[0] in self.explain:
            self.features[row[0]] = features

    def _columns(self) -> tuple[list[Any], ...]:
        return (
            self.transaction_ids,
            self.times,
            self.cards,
            self.scores,
            self.outcomes,
            self.partitions,
            self.generations,
            self.processing_ms,
            self.write_lags_s,
            self.amounts,
            self.review_thresholds,
            self.reason_codes,
        )


def collect(
    messages: Iterable[TopicMessage], keep: RecordFilter, explain: Collection[str] = frozenset()
) -> AuditCollection:
    """The report's view of ``messages``; the features of the transactions in ``explain`` kept whole."""
    collection = AuditCollection(explain=explain)
    for message in messages:
        collection.add(message, keep)
    return collection
