"""The wire contract: transactions and labels as JSON, decoded into typed records.

Decoding never raises anything but :class:`InvalidInput`, whose ``reason`` is a short stable code
(used as a dead-letter reason and a metric label) and whose ``detail`` says what exactly was wrong.

>>> tx = decode_transaction(b'{"transaction_id": "t1", "timestamp": "2018-04-01T00:00:31Z",'
...                         b' "customer_id": "c1", "terminal_id": "m1", "amount": 12.5}')
>>> tx.amount, tx.event_time
(12.5, 1522540831.0)
>>> decode_transaction(b'{"transaction_id": "t1"}')
Traceback (most recent call last):
...
detector.engine.records.InvalidInput: missing_field: 'timestamp' is required
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, final

import orjson

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_ID_LENGTH = 128
# Above any real payment, and far enough from float overflow that sums of squares stay finite.
MAX_AMOUNT = 1e12
# Event times outside this range are rejected: they are typos or attacks, and would poison windows.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
MAX_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
_CONTRACT_FIELDS = frozenset(
    {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "currency", "is_fraud"}
)


class InvalidInput(ValueError):
    """Input that cannot be processed; ``reason`` is a stable code, ``detail`` a human explanation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@final  # exact types: inputs are told apart by ``type(event) is``
@dataclass(frozen=True, slots=True)
class Transaction:
    """A payment to score. ``event_time`` is the parsed ``timestamp`` in epoch seconds (UTC)."""

    transaction_id: str
    event_time: float
    customer_id: str
    terminal_id: str
    amount: float
    currency: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.event_time)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "transaction_id": self.transaction_id,
            "timestamp": self.timestamp,
            "customer_id": self.customer_id,
            "terminal_id": self.terminal_id,
            "amount": self.amount,
        }
        if self.currency is not None:
            body["currency"] = self.currency
        body.update(self.extras)
        return body

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


@final
@dataclass(frozen=True, slots=True)
class Label:
    """The known outcome of a transaction; ``event_time`` is when the outcome became known."""

    transaction_id: str
    customer_id: str
    is_fraud: bool
    event_time: float

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.event_time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "customer_id": self.customer_id,
            "is_fraud": self.is_fraud,
            "timestamp": self.timestamp,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def format_timestamp(event_time: float) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when there are any.

    >>> format_timestamp(1522540831.0), format_timestamp(1522540831.25)
    ('2018-04-01T00:00:31Z', '2018-04-01T00:00:31.250000Z')
    """
    if event_time == int(event_time):  # the common case: the hour formatted once, the rest looked up
        hour, second = divmod(int(event_time), 3600)
        return _hour(hour) + _MINUTES_SECONDS[second]
    moment = datetime.fromtimestamp(event_time, tz=UTC)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


_MINUTES_SECONDS = tuple(f"{second // 60:02d}:{second % 60:02d}Z" for second in range(3600))


@lru_cache(maxsize=256)
def _hour(hour: int) -> str:
    return time.strftime("%Y-%m-%dT%H:", time.gmtime(hour * 3600))


def _utc_seconds(stamp: str) -> float | None:
    """Epoch seconds of a timestamp in the form every producer sends, ``YYYY-MM-DDTHH:MM:SSZ``
    within 2000..2100; None for any other form, which :func:`parse_timestamp` checks step by step."""
    if len(stamp) != 20 or stamp[10] != "T" or stamp[19] != "Z":
        return None
    try:
        seconds = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    return seconds if MIN_EVENT_TIME <= seconds < MAX_EVENT_TIME else None


def parse_timestamp(value: Any, name: str = "timestamp") -> float:
    """Parse an RFC 3339 timestamp with an explicit offset into epoch seconds."""
    if type(value) is str and (seconds := _utc_seconds(value)) is not None:
        return seconds
    if not isinstance(value, str):
        raise InvalidInput("bad_timestamp", f"{name!r} must be an RFC 3339 string, got {_kind(value)}")
    if len(value) > 40:
        raise InvalidInput("bad_timestamp", f"{name!r} is too long to be an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("bad_timestamp", f"{name!r} is not RFC 3339: {value!r}") from None
    if moment.tzinfo is None or "T" not in value.upper():
        raise InvalidInput("bad_timestamp", f"{name!r} needs a date, a time and an offset: {value!r}")
    seconds = moment.timestamp()
    if not MIN_EVENT_TIME <= seconds < MAX_EVENT_TIME:
        raise InvalidInput("bad_timestamp", f"{name!r} is outside 2000..2100: {value!r}")
    return seconds


def decode_transaction(payload: bytes | None, max_bytes: int = MAX_PAYLOAD_BYTES) -> Transaction:
    """Decode one transaction message; unknown fields are kept in ``extras``."""
    body = _decode_object(payload, max_bytes)
    return _plain_transaction(body) or _checked_transaction(body)


def _plain_transaction(body: dict[str, Any]) -> Transaction | None:
    """The common case, checked in one pass: the contract's fields only, all valid, the amount a
    float and the time in UTC with a ``Z``; None for anything else, which :func:`_checked_transaction`
    then decodes or refuses with its reason."""
    currency = body.get("currency")
    if len(body) != (5 if currency is None else 6):
        return None
    try:
        transaction_id, stamp = body["transaction_id"], body["timestamp"]
        customer_id, terminal_id, amount = body["customer_id"], body["terminal_id"], body["amount"]
    except KeyError:
        return None
    if not (
        type(transaction_id) is str
        and type(customer_id) is str
        and type(terminal_id) is str
        and type(amount) is float
        and type(stamp) is str
        and 0 < len(transaction_id) <= MAX_ID_LENGTH
        and 0 < len(customer_id) <= MAX_ID_LENGTH
        and 0 < len(terminal_id) <= MAX_ID_LENGTH
        and 0.0 <= amount <= MAX_AMOUNT  # false for NaN; infinity is above the bound
        and (currency is None or (type(currency) is str and len(currency) == 3 and currency.isalpha()))
    ):
        return None
    event_time = _utc_seconds(stamp)
    if event_time is None:
        return None
    currency = currency.upper() if currency else None
    return Transaction(transaction_id, event_time, customer_id, terminal_id, amount, currency, {})


def _checked_transaction(body: dict[str, Any]) -> Transaction:
    currency = body.get("currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise InvalidInput("bad_field", f"'currency' must be an ISO 4217 code, got {currency!r}")
    return Transaction(
        transaction_id=_identifier(body, "transaction_id"),
        event_time=parse_timestamp(_required(body, "timestamp")),
        customer_id=_identifier(body, "customer_id"),
        terminal_id=_identifier(body, "terminal_id"),
        amount=_amount(_required(body, "amount")),
        currency=currency.upper() if currency else None,
        extras={k: v for k, v in body.items() if k not in _CONTRACT_FIELDS},
    )


def decode_label(payload: bytes | None, max_bytes: int = MAX_PAYLOAD_BYTES) -> Label:
    """Decode one label message."""
    body = _decode_object(payload, max_bytes)
    return _plain_label(body) or _checked_label(body)


def _plain_label(body: dict[str, Any]) -> Label | None:
    """The common case, checked in one pass as :func:`_plain_transaction` does (a label is every
    other input record); None for anything else, which :func:`_checked_label` decodes or refuses."""
    try:
        transaction_id, customer_id = body["transaction_id"], body["customer_id"]
        is_fraud, stamp = body["is_fraud"], body["timestamp"]
    except KeyError:
        return None
    if not (
        type(transaction_id) is str
        and type(customer_id) is str
        and type(is_fraud) is bool
        and type(stamp) is str
        and 0 < len(transaction_id) <= MAX_ID_LENGTH
        and 0 < len(customer_id) <= MAX_ID_LENGTH
    ):
        return None
    event_time = _utc_seconds(stamp)
    return None if event_time is None else Label(transaction_id, customer_id, is_fraud, event_time)


def _checked_label(body: dict[str, Any]) -> Label:
    is_fraud = _required(body, "is_fraud")
    if not isinstance(is_fraud, bool):
        raise InvalidInput("bad_field", f"'is_fraud' must be true or false, got {_kind(is_fraud)}")
    return Label(
        transaction_id=_identifier(body, "transaction_id"),
        customer_id=_identifier(body, "customer_id"),
        is_fraud=is_fraud,
        event_time=parse_timestamp(_required(body, "timestamp")),
    )


def _decode_object(payload: bytes | None, max_bytes: int) -> dict[str, Any]:
    if payload is None:
        raise InvalidInput("empty_payload", "the message has no value")
    if len(payload) > max_bytes:
        raise InvalidInput("oversized_payload", f"{len(payload)} bytes is over the limit of {max_bytes}")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidInput("bad_json", f"not valid UTF-8 JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidInput("bad_json", f"expected a JSON object, got {_kind(body)}")
    return body


def _required(body: dict[str, Any], name: str) -> Any:
    try:
        return body[name]
    except KeyError:
        raise InvalidInput("missing_field", f"{name!r} is required") from None


def _identifier(body: dict[str, Any], name: str) -> str:
    value = _required(body, name)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(
            "bad_field", f"{name!r} must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        )
    return value


def _amount(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("bad_amount", f"'amount' must be a number, got {_kind(value)}")
    amount = float(value)
    if not math.isfinite(amount) or not 0 <= amount <= MAX_AMOUNT:
        raise InvalidInput(
            "bad_amount", f"'amount' must be finite, >= 0 and <= {MAX_AMOUNT:g}, got {value!r}"
        )
    return amount


def _kind(value: Any) -> str:
    return type(value).__name__
