"""Replay of recorded transactions, and their labels, in event-time order.

Inputs are JSONL (one object a line, in the wire format) or CSV (a header line, then one record a
line; by file suffix ``.csv``). ``mapping`` renames source columns to contract fields
(``{"timestamp": "TX_DATETIME"}``); from CSV only contract fields are kept, so columns such as a
fraud flag never leak into the published transactions, while JSONL records keep their extra fields.
Timestamps are RFC 3339 unless ``timestamp_format`` (strptime) is given; those are taken as UTC.

Labels come from a separate file, or from a column of the transaction file, stamped with the
transaction's time plus ``label_delay``. Either way a label stamped T goes out after every
transaction stamped up to T.

Each input must be sorted by time. A record up to ``max_disorder`` seconds older than the newest one
seen is put back in place (in a buffer that holds that much event time); an older one is a bad record.
A bad record is reported with its file and line, then either stops the replay (``on_error="stop"``,
the default, so nothing is lost unnoticed) or is skipped and counted (``on_error="skip"``).
"""

from __future__ import annotations

import csv
import heapq
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import orjson

from detector.engine.records import (
    InvalidInput,
    Label,
    Transaction,
    decode_label,
    decode_transaction,
    format_timestamp,
)
from producers.ordering import LabelQueue

log = logging.getLogger(__name__)

TRANSACTION_FIELDS = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "currency")
LABEL_FIELDS = ("transaction_id", "customer_id", "is_fraud", "timestamp")
OnError = Literal["stop", "skip"]
_OPTIONAL_FIELDS = frozenset({"currency"})
_LOGGED_SKIPS = 20
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})

T = TypeVar("T")


class ReplayError(ValueError):
    """A record that cannot be replayed, with where it is."""

    def __init__(self, path: Path, line: int, reason: str, detail: str) -> None:
        super().__init__(f"{path}:{line}: {reason}: {detail}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class SourceFormat:
    """How to read one input file: column names per contract field, and the timestamp format."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None


@dataclass
class ReplayStats:
    transactions: int = 0
    labels: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # bad records by reason


class Replay:
    """Iterate to get transactions and labels in event-time order; ``stats`` counts them."""

    def __init__(
        self,
        transactions: str | Path,
        *,
        transaction_format: SourceFormat | None = None,
        labels: str | Path | None = None,
        label_format: SourceFormat | None = None,
        label_column: str | None = None,
        label_delay: float = 0.0,
        max_disorder: float = 0.0,
        on_error: OnError = "stop",
    ) -> None:
        if labels is not None and label_column is not None:
            raise ValueError("take labels from a file or from a column, not both")
        if label_delay < 0 or max_disorder < 0:
            raise ValueError("label_delay and max_disorder must be at least 0")
        self.transactions_path = Path(transactions)
        self.transaction_format = transaction_format or SourceFormat()
        self.labels_path = Path(labels) if labels is not None else None
        self.label_format = label_format or SourceFormat()
        _check_mapping(self.transaction_format.mapping, TRANSACTION_FIELDS)
        _check_mapping(self.label_format.mapping, LABEL_FIELDS)
        self.label_column = label_column
        self.label_delay = label_delay
        self.max_disorder = max_disorder
        self.on_error = on_error
        self.stats = ReplayStats()

    def __iter__(self) -> Iterator[Transaction | Label]:
        for event in self._merged():
            if isinstance(event, Label):
                self.stats.labels += 1
            else:
                self.stats.transactions += 1
            yield event

    def _merged(self) -> Iterator[Transaction | Label]:
        transactions = self._in_order(self.transactions_path, self._read_transactions())
        if self.label_column is not None:
            return self._with_column_labels(transactions)
        plain = (transaction for transaction, _ in transactions)
        if self.labels_path is None:
            return plain
        labels = self._in_order(self.labels_path, self._read_labels(self.labels_path))
        # Stable merge: at equal times the transaction (first input) goes before the label.
        return heapq.merge(plain, labels, key=lambda event: event.event_time)

    def _with_column_labels(
        self, transactions: Iterable[tuple[Transaction, bool | None]]
    ) -> Iterator[Transaction | Label]:
        queue = LabelQueue()
        for transaction, is_fraud in transactions:
            yield from queue.before(transaction.event_time)
            yield transaction
            time = transaction.event_time + self.label_delay
            queue.push(Label(transaction.transaction_id, transaction.customer_id, bool(is_fraud), time))
        yield from queue.drain()

    def _read_transactions(self) -> Iterator[tuple[int, tuple[Transaction, bool | None]]]:
        path = self.transactions_path
        extra = () if self.label_column is None else (self.label_column,)
        for line, row in _rows(path, self.transaction_format, TRANSACTION_FIELDS, extra):
            try:
                if isinstance(row, InvalidInput):
                    raise row
                is_fraud = None if self.label_column is None else _flag(row.pop(self.label_column, None))
                yield line, (decode_transaction(orjson.dumps(row)), is_fraud)
            except InvalidInput as error:
                self._reject(ReplayError(path, line, error.reason, error.detail))

    def _read_labels(self, path: Path) -> Iterator[tuple[int, Label]]:
        for line, row in _rows(path, self.label_format, LABEL_FIELDS):
            try:
                if isinstance(row, InvalidInput):
                    raise row
                row["is_fraud"] = _flag(row.get("is_fraud"))
                yield line, decode_label(orjson.dumps(row))
            except InvalidInput as error:
                self._reject(ReplayError(path, line, error.reason, error.detail))

    def _in_order(self, path: Path, records: Iterable[tuple[int, T]]) -> Iterator[T]:
        """``records`` in event-time order, or a bad record for each one out of order."""
        buffer: _ReorderBuffer[T] = _ReorderBuffer(self.max_disorder)
        for line, record in records:
            time = _event_time(record)
            if time < buffer.newest - self.max_disorder:
                self._reject(
                    ReplayError(
                        path,
                        line,
                        "out_of_order",
                        f"{format_timestamp(time)} is more than {self.max_disorder:g}s before "
                        f"{format_timestamp(buffer.newest)} (line {buffer.newest_line}); sort the file by "
                        "time or allow some disorder (--max-disorder)",
                    )
                )
                continue
            yield from buffer.push(time, line, record)
        yield from buffer.drain()

    def _reject(self, error: ReplayError) -> None:
        if self.on_error == "stop":
            raise error
        if sum(self.stats.skipped.values()) < _LOGGED_SKIPS:
            log.warning("skipped %s", error)
        self.stats.skipped[error.reason] += 1


class _ReorderBuffer(Generic[T]):
    """Holds records until no accepted record can come before them any more."""

    def __init__(self, max_disorder: float) -> None:
        self.max_disorder = max_disorder
        self.newest = float("-inf")
        self.newest_line = 0
        self._heap: list[tuple[float, int, T]] = []

    def push(self, time: float, line: int, record: T) -> Iterator[T]:
        if time > self.newest:
            self.newest, self.newest_line = time, line
        heapq.heappush(self._heap, (time, line, record))
        while self._heap and self._heap[0][0] <= self.newest - self.max_disorder:
            yield heapq.heappop(self._heap)[2]

    def drain(self) -> Iterator[T]:
        while self._heap:
            yield heapq.heappop(self._heap)[2]


def _event_time(record: Label | tuple[Transaction, bool | None]) -> float:
    return record[0].event_time if isinstance(record, tuple) else record.event_time


def _rows(
    path: Path, source: SourceFormat, fields: tuple[str, ...], extra: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, Any] | InvalidInput]]:
    """(line number, row with contract field names and RFC 3339 timestamps, or what is wrong with it)."""
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, {name: source.mapping.get(name, name) for name in fields}, extra)
    else:
        rows = _jsonl_rows(path, source.mapping)
    for line, row in rows:
        if not isinstance(row, InvalidInput) and source.timestamp_format is not None:
            try:
                row["timestamp"] = _reformat(row.get("timestamp"), source.timestamp_format)
            except InvalidInput as error:
                yield line, error
                continue
        yield line, row


def _jsonl_rows(
    path: Path, mapping: Mapping[str, str]
) -> Iterator[tuple[int, dict[str, Any] | InvalidInput]]:
    with path.open("rb") as lines:
        for line, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                yield line, InvalidInput("bad_json", f"not valid UTF-8 JSON: {error}")
                continue
            if not isinstance(row, dict):
                yield line, InvalidInput("bad_json", f"expected a JSON object, got {type(row).__name__}")
                continue
            for name, column in mapping.items():
                if column in row:
                    row[name] = row.pop(column)
            yield line, row


def _csv_rows(
    path: Path, columns: Mapping[str, str], extra: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, Any] | InvalidInput]]:
    """Rows of the contract fields in ``columns`` (field -> column) and of the ``extra`` columns;
    other columns are left out."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        required = [column for name, column in columns.items() if name not in _OPTIONAL_FIELDS]
        missing = [column for column in (*required, *extra) if column not in header]
        if missing:
            raise ReplayError(
                path, 1, "missing_column", f"no column {', '.join(missing)} in the header {header}"
            )
        positions = {name: header.index(column) for name, column in columns.items() if column in header}
        positions.update({column: header.index(column) for column in extra})
        for values in reader:
            if len(values) != len(header):
                yield (
                    reader.line_num,
                    InvalidInput("bad_csv", f"expected {len(header)} fields, got {len(values)}"),
                )
                continue
            row: dict[str, Any] = {name: values[i] for name, i in positions.items() if values[i] != ""}
            if "amount" in row:
                row["amount"] = _number(row["amount"])
            yield reader.line_num, row


def _reformat(value: Any, timestamp_format: str) -> str:
    """A timestamp in ``timestamp_format``, taken as UTC, as RFC 3339."""
    if not isinstance(value, str):
        raise InvalidInput("bad_timestamp", f"'timestamp' must be a string in {timestamp_format!r}")
    try:
        moment = datetime.strptime(value, timestamp_format).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("bad_timestamp", f"{value!r} does not match {timestamp_format!r}") from None
    return format_timestamp(moment.timestamp())


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput("bad_label", f"a label must be 1/0 or true/false, got {value!r}")


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value  # decoding reports it as a bad amount


def _check_mapping(mapping: Mapping[str, str], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ValueError(f"cannot map {', '.join(unknown)}: the fields are {', '.join(fields)}")
