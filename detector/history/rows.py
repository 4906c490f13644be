"""Rows of a history file, JSONL or CSV, with contract field names and RFC 3339 timestamps.

Each row comes with its line number, or as the :class:`InvalidInput` that says what is wrong with
it, so the reader can report the file and line of every bad record.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from detector.engine.records import InvalidInput, format_timestamp

_OPTIONAL_FIELDS = frozenset({"currency"})
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})


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


def rows(
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


def flag(value: Any) -> bool:
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
