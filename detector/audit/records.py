"""The audit record format: every record the detector writes, and how a reader takes one back.

Audit records are plain JSON objects with a ``record_type``: ``decision`` for a transaction,
``rejected`` for input that could not be processed, or the engine event kind (``drift_detected``,
``model_swapped``, ...). They carry what an analyst needs to explain a decision months later: the
features used, the score, the thresholds in force, the reasons, the model and its generation, and
where the input came from. Each is sealed into its partition's hash chain
(:mod:`detector.audit.chain`), which adds the ``chain`` fields; :func:`chained_for` says whether a
record read back has them. This module is the one place that knows the format, for the service
that writes records and for the analyst commands that read them.

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

SCHEMA_VERSION = 1
DECISION, REJECTED = "decision", "rejected"
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


def decision_record(
    decision: Decision, provenance: Provenance, processing_ms: float, pseudonym_key: bytes | None = None
) -> dict[str, Any]:
    tx = decision.transaction
    return {
        "record_type": DECISION,
        "schema": SCHEMA_VERSION,
        "transaction_id": tx.transaction_id,
        "event_time": tx.timestamp,
        "customer_id": pseudonymise(tx.customer_id, pseudonym_key),
        "terminal_id": tx.terminal_id,
        "amount": tx.amount,
        "currency": tx.currency,
        "decision": decision.outcome,
        "score": decision.score,
        "thresholds": {"review": decision.review_threshold, "block": decision.block_threshold},
        "reason_codes": list(decision.reason_codes),
        "top_features": [{"name": name, "contribution": value} for name, value in decision.top_features],
        "features": decision.features,
        "model": {
            "kind": decision.model_kind,
            "generation": decision.model_generation,
            "version": decision.model_version,
        },
        "drift_state": decision.drift_state,
        "input": provenance.as_dict(),
        "instance_id": provenance.instance_id,
        "processed_at": _now(),
        "processing_ms": round(processing_ms, 3),
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
    return f"{_whole_second(second)}.{int((now - second) * 1000):03d}Z"


@lru_cache(maxsize=1)
def _whole_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
