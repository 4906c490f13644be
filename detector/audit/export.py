"""Write the selected audit records out as JSONL or CSV (the ``audit replay`` command).

JSONL lines are the records' original bytes, untouched, so an export can be verified again and
read by any JSON tool; each feature schema a selected decision names is written before it, so the
file can still name its features (the report reads it so). ``expanded`` lines are the records with
their features by name instead: for reading, no longer the sealed bytes. CSV flattens the fields an
analyst sorts and filters on into columns (nested values as JSON, features by name) and adds where
each record sits in the audit topic.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import orjson

from detector.audit.reader import TopicMessage
from detector.audit.records import FEATURE_SCHEMA, FeatureSchemas, decode_record
from detector.audit.selection import RecordFilter, field_value

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


class RecordSink(Protocol):
    writes_schemas: bool  # whether feature schema records are written (else only used to name features)

    def write(self, message: TopicMessage, record: dict[str, Any]) -> None: ...


class JsonlSink:
    """One record a line, as the detector wrote it."""

    writes_schemas = True

    def __init__(self, stream: IO[bytes], flush_each: bool = False) -> None:
        self.stream = stream
        self.flush_each = flush_each

    def write(self, message: TopicMessage, record: dict[str, Any]) -> None:
        self.stream.write((message.value or b"") + b"\n")
        if self.flush_each:
            self.stream.flush()


class ExpandedJsonlSink(JsonlSink):
    """One record a line with its features by name: for people and tools, not for verifying."""

    writes_schemas = False

    def write(self, message: TopicMessage, record: dict[str, Any]) -> None:
        self.stream.write(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
        if self.flush_each:
            self.stream.flush()


class CsvSink:
    """A header line, then one row a record (UTF-8); lists and objects as JSON text."""

    writes_schemas = False

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
class ExportCounts:
    read: int = 0
    written: int = 0
    unreadable: int = 0  # not a JSON object: not written by the detector (verify says more)


def export(messages: Iterable[TopicMessage], keep: RecordFilter, sink: RecordSink) -> ExportCounts:
    """Write every record of ``messages`` that ``keep`` matches to ``sink``, with the feature
    schemas they name before them if the sink writes schemas, else their features by name."""
    counts = ExportCounts()
    schemas = FeatureSchemas()
    schema_messages: dict[str, tuple[TopicMessage, dict[str, Any]]] = {}  # not written yet
    for message in messages:
        counts.read += 1
        record = decode_record(message.value)
        if record is None:
            counts.unreadable += 1
            continue
        is_schema = schemas.note(record)
        if is_schema and isinstance(record.get("feature_schema"), str):
            schema_messages[record["feature_schema"]] = (message, record)
        if not keep.matches(record) or (is_schema and not sink.writes_schemas):
            continue
        needed = schema_messages.pop(str(record.get("feature_schema")), None)
        if needed is not None and sink.writes_schemas and record.get("record_type") != FEATURE_SCHEMA:
            sink.write(*needed)
            counts.written += 1
        sink.write(message, record if sink.writes_schemas else schemas.expanded(record))
        counts.written += 1
    return counts


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else value
