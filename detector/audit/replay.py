"""Select audit records (by event time, customer, transaction, decision, type, model generation) and
write them out as JSONL or CSV.

JSONL lines are the records' original bytes, untouched, so an export can be verified again and
read by any JSON tool; CSV flattens the fields an analyst sorts and filters on into columns (nested
values as JSON) and adds where each record sits in the audit topic.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import orjson

from detector.audit.reader import TopicMessage, decode_record
from detector.audit.records import pseudonymise
from detector.engine.records import InvalidInput, parse_timestamp

# Where each CSV column's value is in a record (dots step into objects); the column is named by the
# path with "_" for ".".
CSV_PATHS = (
    "record_type", "event_time", "transaction_id", "customer_id", "terminal_id", "amount", "currency",
    "decision", "score", "thresholds.review", "thresholds.block", "reason_codes", "top_features",
    "model.kind", "model.generation", "drift_state", "reason", "detail", "features", "input.topic",
    "input.partition", "input.offset", "instance_id", "processed_at", "processing_ms", "chain.seq",
    "chain.hash",
)  # fmt: skip
CSV_COLUMNS = ("audit_partition", "audit_offset", *(path.replace(".", "_") for path in CSV_PATHS))


def field_value(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in nested objects, None where any step is missing."""
    value: Any = record
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def event_time(record: dict[str, Any]) -> float | None:
    """The record's event time in epoch seconds; None if it has none (e.g. rejected input)."""
    try:
        return parse_timestamp(record.get("event_time"), "event_time")
    except InvalidInput:
        return None


def customer_ids(customers: Iterable[str], pseudonym_key: bytes | None) -> frozenset[str]:
    """The ids to look for: as given, and as the detector pseudonymises them with ``pseudonym_key``."""
    given = frozenset(customers)
    return given | {pseudonymise(c, pseudonym_key) for c in given}


@dataclass(frozen=True)
class RecordFilter:
    """Which records to keep; every condition given must hold, an empty set means any value.

    Time bounds are on event time, half open: ``since <= t < until``. A condition on a decision
    field (customer, transaction, decision) keeps decision records only.
    """

    since: float | None = None
    until: float | None = None
    customers: frozenset[str] = frozenset()
    transaction_ids: frozenset[str] = frozenset()
    decisions: frozenset[str] = frozenset()
    record_types: frozenset[str] = frozenset()
    generations: frozenset[int] = frozenset()

    def matches(self, record: dict[str, Any]) -> bool:
        conditions = (
            (self.record_types, record.get("record_type")),
            (self.decisions, record.get("decision")),
            (self.customers, record.get("customer_id")),
            (self.transaction_ids, record.get("transaction_id")),
            (self.generations, field_value(record, "model.generation")),
        )
        if any(wanted and value not in wanted for wanted, value in conditions):
            return False
        if self.since is None and self.until is None:
            return True
        moment = event_time(record)
        return (
            moment is not None
            and (self.since is None or moment >= self.since)
            and (self.until is None or moment < self.until)
        )


class RecordSink(Protocol):
    def write(self, message: TopicMessage, record: dict[str, Any]) -> None: ...


class JsonlSink:
    """One record a line, as the detector wrote it."""

    def __init__(self, stream: IO[bytes], flush_each: bool = False) -> None:
        self.stream = stream
        self.flush_each = flush_each

    def write(self, message: TopicMessage, record: dict[str, Any]) -> None:
        self.stream.write((message.value or b"") + b"\n")
        if self.flush_each:
            self.stream.flush()


class CsvSink:
    """A header line, then one row a record (UTF-8); lists and objects as JSON text."""

    def __init__(self, stream: IO[bytes], flush_each: bool = False) -> None:
        self.stream = stream
        self.flush_each = flush_each
        self._row = io.StringIO()
        self._writer = csv.writer(self._row)
        self._emit(CSV_COLUMNS)

    def write(self, message: TopicMessage, record: dict[str, Any]) -> None:
        cells = [_cell(field_value(record, path)) for path in CSV_PATHS]
        self._emit([message.partition, message.offset, *cells])
        if self.flush_each:
            self.stream.flush()

    def _emit(self, row: Sequence[Any]) -> None:
        self._row.seek(0)
        self._row.truncate()
        self._writer.writerow(row)
        self.stream.write(self._row.getvalue().encode())


@dataclass
class ReplayCounts:
    read: int = 0
    written: int = 0
    unreadable: int = 0  # not a JSON object: not written by the detector (verify says more)


def replay(messages: Iterable[TopicMessage], keep: RecordFilter, sink: RecordSink) -> ReplayCounts:
    """Write every record of ``messages`` that ``keep`` matches to ``sink``."""
    counts = ReplayCounts()
    for message in messages:
        counts.read += 1
        record = decode_record(message.value)
        if record is None:
            counts.unreadable += 1
        elif keep.matches(record):
            sink.write(message, record)
            counts.written += 1
    return counts


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else value
