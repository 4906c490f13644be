"""Which audit records an analyst asks for: by event time, customer, transaction, decision, record
type or model generation, shared by the export and the report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from detector.audit.records import pseudonymise
from detector.engine.records import InvalidInput, format_timestamp, parse_timestamp


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

    def period(self) -> str:
        """The event-time bounds in words, for the report's list of sources."""
        if self.since is None and self.until is None:
            return "all"
        start = format_timestamp(self.since) if self.since is not None else "the first record"
        end = f"before {format_timestamp(self.until)}" if self.until is not None else "the last record"
        return f"from {start} to {end}"
