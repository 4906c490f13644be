"""Recorded transactions, and their labels, read back in event-time order.

One reader for everything that takes history from files: ``fraud-replay`` publishes what it reads,
``fraud-detector backtest`` feeds it to engines in memory, so both see the same events.

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

A *merged* file holds both, one JSONL object a line in the order they were published (as
``fraud-replay`` sends them): a line with ``is_fraud`` and no ``amount`` is a label, any other a
transaction. It must be in event-time order too, as the published stream is.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

import orjson

from detector.engine.labels import LabelQueue
from detector.engine.records import (
    InvalidInput,
    Label,
    Transaction,
    decode_label,
    decode_transaction,
    format_timestamp,
)
from detector.history.rows import ReplayError, SourceFormat, flag, rows

log = logging.getLogger(__name__)

TRANSACTION_FIELDS = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "currency")
LABEL_FIELDS = ("transaction_id", "customer_id", "is_fraud", "timestamp")
OnError = Literal["stop", "skip"]
_LOGGED_SKIPS = 20

T = TypeVar("T", bound=Transaction | Label | tuple[Transaction, bool | None])  # a replayed record


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
        merged: bool = False,
    ) -> None:
        if labels is not None and label_column is not None:
            raise ValueError("take labels from a file or from a column, not both")
        if merged and (labels is not None or label_column is not None):
            raise ValueError("a merged file holds its own labels: no label file or column with it")
        if merged and Path(transactions).suffix.lower() == ".csv":
            raise ValueError("a merged file is JSONL, as published; CSV holds transactions or labels")
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
        self.merged = merged
        self.stats = ReplayStats()

    def __iter__(self) -> Iterator[Transaction | Label]:
        for event in self._merged():
            if isinstance(event, Label):
                self.stats.labels += 1
            else:
                self.stats.transactions += 1
            yield event

    def _merged(self) -> Iterator[Transaction | Label]:
        if self.merged:
            return self._in_order(self.transactions_path, self._read_events())
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
            yield from queue.pop_before(transaction.event_time)
            yield transaction
            time = transaction.event_time + self.label_delay
            queue.push(Label(transaction.transaction_id, transaction.customer_id, bool(is_fraud), time))
        yield from queue.pop_before(float("inf"))

    def _read_transactions(self) -> Iterator[tuple[int, tuple[Transaction, bool | None]]]:
        path = self.transactions_path
        extra = () if self.label_column is None else (self.label_column,)
        for line, row in rows(path, self.transaction_format, TRANSACTION_FIELDS, extra):
            try:
                if isinstance(row, InvalidInput):
                    raise row
                is_fraud = None if self.label_column is None else flag(row.pop(self.label_column, None))
                yield line, (decode_transaction(orjson.dumps(row)), is_fraud)
            except InvalidInput as error:
                self._reject(ReplayError(path, line, error.reason, error.detail))

    def _read_labels(self, path: Path) -> Iterator[tuple[int, Label]]:
        for line, row in rows(path, self.label_format, LABEL_FIELDS):
            try:
                if isinstance(row, InvalidInput):
                    raise row
                row["is_fraud"] = flag(row.get("is_fraud"))
                yield line, decode_label(orjson.dumps(row))
            except InvalidInput as error:
                self._reject(ReplayError(path, line, error.reason, error.detail))

    def _read_events(self) -> Iterator[tuple[int, Transaction | Label]]:
        """The records of a merged file, each decoded as the topic it was published to would."""
        path = self.transactions_path
        for line, row in rows(path, self.transaction_format, TRANSACTION_FIELDS):
            try:
                if isinstance(row, InvalidInput):
                    raise row
                if "is_fraud" in row and "amount" not in row:
                    yield line, decode_label(orjson.dumps(row))
                else:
                    yield line, decode_transaction(orjson.dumps(row))
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


def _event_time(record: Transaction | Label | tuple[Transaction, bool | None]) -> float:
    return record[0].event_time if isinstance(record, tuple) else record.event_time


def _check_mapping(mapping: Mapping[str, str], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ValueError(f"cannot map {', '.join(unknown)}: the fields are {', '.join(fields)}")
