"""The audit record format: every record the detector writes, and how a reader takes one back.

Audit records are plain JSON objects with a ``record_type``: ``decision`` for a transaction,
``rejected`` for input that could not be processed, the engine event kind (``drift_detected``,
``model_swapped``, ...), or ``feature_schema``: the feature names, written once into a chain before
the first decision that uses them. They carry what an analyst needs to explain a decision months later: the
features used, the score, the thresholds in force, the reasons, the model and its generation, and
where the input came from. Each is sealed into its partition's hash chain
(:mod:`detector.audit.chain`), which adds the ``chain`` fields; :func:`chained_for` says whether a
record read back has them. This module is the one place that knows the format, for the service
that writes records and for the analyst commands that read them.

Format versions (``schema``): 1 wrote a decision's ``features`` as a name -> value object; 2 writes
them as an array of values under the ``feature_schema`` id the decision names, whose record holds the
names in the same order (half the bytes of a decision). Readers take both: :class:`FeatureSchemas`
gives every decision its features by name again.

The compact decision sent back upstream (:func:`decision_reply`) is built here too, from the same
decision, so that the two can never disagree.

Customer ids can be pseudonymised with a keyed hash: the same card always maps to the same token,
so investigations still group by card, but the token cannot be reversed without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from detector.engine.outputs import Decision, EngineEvent
from detector.engine.records import InvalidInput, format_timestamp

SCHEMA_VERSION = 2
DECISION, REJECTED, FEATURE_SCHEMA = "decision", "rejected", "feature_schema"
CHAIN_FIELDS = frozenset({"partition", "seq", "prev_hash", "hash"})


class Provenance(NamedTuple):
    """Where an input came from and who processed it (a tuple: one is built per input record)."""

    topic: str
    partition: int
    offset: int
    instance_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def pseudonymise(customer_id: str, key: bytes | None) -> str:
    """``customer_id`` unchanged without a key; else a stable, irreversible token."""
    if not key:
        return customer_id
    return "p:" + hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()[:32]


def feature_schema_id(names: tuple[str, ...]) -> str:
    """The id of a feature schema, from its names: every instance with the same features agrees on it."""
    return hashlib.sha256(orjson.dumps(names)).hexdigest()[:16]


def feature_schema_record(schema_id: str, names: tuple[str, ...], instance_id: str) -> dict[str, Any]:
    """The names of the feature values of the decisions that name ``schema_id``, in their order."""
    return {
        "record_type": FEATURE_SCHEMA,
        "schema": SCHEMA_VERSION,
        "feature_schema": schema_id,
        "names": list(names),
        "instance_id": instance_id,
        "processed_at": _now(),
    }


class WrittenSchema:
    """The feature schema a chain wrote last, so that each is written once, before its decisions."""

    __slots__ = ("names", "schema_id")

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.schema_id = ""

    def record_if_new(self, features: dict[str, float], instance_id: str) -> dict[str, Any] | None:
        """The schema record to seal before a decision with ``features``; None if the chain has it."""
        names = tuple(features)
        if names == self.names:
            return None
        self.names, self.schema_id = names, feature_schema_id(names)
        return feature_schema_record(self.schema_id, names, instance_id)


def decision_record(
    decision: Decision,
    schema_id: str,
    provenance: Provenance,
    processing_ms: float,
    pseudonym_key: bytes | None = None,
) -> dict[str, Any]:
    """``schema_id``: the feature schema of ``decision.features`` (:func:`feature_schema_id`).

    The keys are in sorted order at every level, with a ``chain`` placeholder in its place, so that
    the chain seals the record, one per transaction, without sorting it (:meth:`ChainState.seal_sorted`).
    """
    tx = decision.transaction
    return {
        "amount": tx.amount,
        "chain": None,
        "currency": tx.currency,
        "customer_id": pseudonymise(tx.customer_id, pseudonym_key),
        "decision": decision.outcome,
        "drift_state": decision.drift_state,
        "event_time": format_timestamp(tx.event_time),
        "feature_schema": schema_id,
        "features": list(decision.features.values()),
        "input": {"offset": provenance.offset, "partition": provenance.partition, "topic": provenance.topic},
        "instance_id": provenance.instance_id,
        "model": {
            "generation": decision.model_generation,
            "kind": decision.model_kind,
            "version": decision.model_version,
        },
        "processed_at": _now(),
        "processing_ms": round(processing_ms, 3),
        "reason_codes": list(decision.reason_codes),
        "record_type": DECISION,
        "schema": SCHEMA_VERSION,
        "score": decision.score,
        "terminal_id": tx.terminal_id,
        "thresholds": {"block": decision.block_threshold, "review": decision.review_threshold},
        "top_features": [{"contribution": value, "name": name} for name, value in decision.top_features],
        "transaction_id": tx.transaction_id,
    }


def event_record(event: EngineEvent, model_kind: str, provenance: Provenance) -> dict[str, Any]:
    return {
        "record_type": event.kind,
        "schema": SCHEMA_VERSION,
        "event_time": format_timestamp(event.event_time),
        "model": {"kind": model_kind, "generation": event.model_generation},
        "detail": event.detail,
        "input": provenance.as_dict(),
        "instance_id": provenance.instance_id,
        "processed_at": _now(),
    }


def rejected_record(
    error: InvalidInput, key: bytes | None, provenance: Provenance, pseudonym_key: bytes | None = None
) -> dict[str, Any]:
    """Which input was refused and why; ``key`` is the input's Kafka key (the customer, if any)."""
    return {
        "record_type": REJECTED,
        "schema": SCHEMA_VERSION,
        "reason": error.reason,
        "detail": error.detail,
        "customer_key": pseudonymise(key.decode(errors="replace"), pseudonym_key) if key else None,
        "input": provenance.as_dict(),
        "instance_id": provenance.instance_id,
    }


def decision_reply(decision: Decision, event_time: str) -> dict[str, Any]:
    """The compact record the payment system reads back from the decisions topic.

    ``event_time`` is the audit record's, passed in so the timestamp is formatted once.
    """
    return {
        "transaction_id": decision.transaction.transaction_id,
        "decision": decision.outcome,
        "score": round(decision.score, 6),
        "reason_codes": list(decision.reason_codes),
        "model_generation": decision.model_generation,
        "model_version": decision.model_version,
        "event_time": event_time,
    }


def decode_record(value: bytes | None) -> dict[str, Any] | None:
    """The audit record in ``value``, None if it is not a JSON object."""
    try:
        record = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


class FeatureSchemas:
    """The feature schemas read so far from an audit topic, to name the values of later decisions.

    >>> schemas = FeatureSchemas()
    >>> schemas.note({"record_type": "feature_schema", "feature_schema": "f1", "names": ["a", "b"]})
    True
    >>> schemas.expanded({"record_type": "decision", "feature_schema": "f1", "features": [1.0, 2.0]})
    {'record_type': 'decision', 'feature_schema': 'f1', 'features': {'a': 1.0, 'b': 2.0}}
    """

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}

    def note(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` is a feature schema (then remembered, if well formed)."""
        if record.get("record_type") != FEATURE_SCHEMA:
            return False
        schema_id, names = record.get("feature_schema"), record.get("names")
        if isinstance(schema_id, str) and isinstance(names, list) and all(isinstance(n, str) for n in names):
            self.names[schema_id] = names
        return True

    def expanded(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its features by name (a copy); as it is if they already are, or if its
        schema was not read (then its ``features`` stay an array)."""
        values, schema_id = record.get("features"), record.get("feature_schema")
        names = self.names.get(schema_id) if isinstance(schema_id, str) else None
        if not isinstance(values, list) or names is None or len(names) != len(values):
            return record
        return {**record, "features": dict(zip(names, values, strict=True))}


def chain_fields(record: Any) -> dict[str, Any] | None:
    """The record's ``chain`` object, None unless it has every chain field (their values unchecked)."""
    chain = record.get("chain") if isinstance(record, dict) else None
    return chain if isinstance(chain, dict) and chain.keys() >= CHAIN_FIELDS else None


def chained_for(record: Any, partition: int) -> bool:
    """Whether a chain can go on from ``record``: sealed for ``partition``, with a whole seq and a hash."""
    chain = chain_fields(record)
    return (
        chain is not None
        and chain["partition"] == partition
        and type(chain["seq"]) is int
        and isinstance(chain["hash"], str)
    )


def _now() -> str:
    """The wall-clock time in RFC 3339 with milliseconds (the date part is formatted once a second)."""
    now = time.time()
    second = int(now)
    return _whole_second(second) + _MILLISECONDS[int((now - second) * 1000)]


_MILLISECONDS = tuple(f".{millisecond:03d}Z" for millisecond in range(1000))


@lru_cache(maxsize=1)
def _whole_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
