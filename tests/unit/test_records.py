"""The wire contract: valid messages decode, every kind of bad input gives a typed, clear error."""

from __future__ import annotations

import time
from datetime import datetime

import orjson
import pytest

from detector.engine.records import (
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    InvalidInput,
    Label,
    Transaction,
    _checked_label,
    _checked_transaction,
    _plain_label,
    _plain_transaction,
    decode_label,
    decode_transaction,
    format_timestamp,
    parse_timestamp,
)

VALID = {
    "transaction_id": "t-1",
    "timestamp": "2018-04-01T00:00:31Z",
    "customer_id": "c-1",
    "terminal_id": "m-1",
    "amount": 57.16,
}


def encode(**changes: object) -> bytes:
    body = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def test_valid_transaction_round_trips_with_extras_carried() -> None:
    tx = decode_transaction(encode(currency="eur", channel="web", risk_hint=3))
    assert tx == Transaction(
        "t-1", 1522540831.0, "c-1", "m-1", 57.16, "EUR", {"channel": "web", "risk_hint": 3}
    )
    assert decode_transaction(tx.to_json()) == tx


def test_timestamps_with_offsets_and_fractions_are_normalised_to_utc() -> None:
    assert parse_timestamp("2018-04-01T02:00:31+02:00") == parse_timestamp("2018-04-01T00:00:31Z")
    assert format_timestamp(parse_timestamp("2018-04-01T00:00:31.250Z")) == "2018-04-01T00:00:31.250000Z"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"amount": NaN}', "bad_json"),
        (b"[" * 5000 + b"]" * 5000, "bad_json"),
        (encode(timestamp=...), "missing_field"),
        (encode(customer_id=...), "missing_field"),
        (encode(transaction_id=7), "bad_field"),
        (encode(transaction_id=""), "bad_field"),
        (encode(terminal_id="x" * 500), "bad_field"),
        (encode(currency="euro"), "bad_field"),
        (encode(amount="12"), "bad_amount"),
        (encode(amount=True), "bad_amount"),
        (encode(amount=-0.01), "bad_amount"),
        (encode(amount=1e13), "bad_amount"),
        (b'{"amount": 1e400}', "bad_json"),
        (encode(amount=None), "bad_amount"),
        (encode(timestamp="2018-04-01 00:00:31"), "bad_timestamp"),
        (encode(timestamp="2018-04-01T00:00:31"), "bad_timestamp"),
        (encode(timestamp="2018-13-01T00:00:31Z"), "bad_timestamp"),
        (encode(timestamp="1900-01-01T00:00:00Z"), "bad_timestamp"),
        (encode(timestamp=1522540831), "bad_timestamp"),
        (encode(padding="x" * 70_000), "oversized_payload"),
    ],
)
def test_bad_transactions_give_a_typed_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as error:
        decode_transaction(payload)
    assert error.value.reason == reason
    assert error.value.detail


def test_labels_decode_and_reject_non_boolean_verdicts() -> None:
    label = Label("t-1", "c-1", True, 1522540831.0)
    assert decode_label(label.to_json()) == label
    with pytest.raises(InvalidInput, match="is_fraud"):
        decode_label(orjson.dumps({**label.to_dict(), "is_fraud": 1}))


@pytest.mark.parametrize(
    ("changes", "common"),
    [
        ({}, True),
        ({"amount": 0.0}, True),
        ({"transaction_id": "x" * 128}, True),
        ({"timestamp": "2099-12-31T23:59:59Z"}, True),
        ({"amount": 57}, False),  # an integer amount
        ({"timestamp": "2018-04-01T02:00:31+02:00"}, False),
        ({"currency": "eur"}, True),
        ({"currency": None}, False),
        ({"note": "carried"}, False),
    ],
)
def test_the_common_case_decodes_as_every_check_would_decode_it(
    changes: dict[str, object], common: bool
) -> None:
    body = {**VALID, **changes}
    checked = _checked_transaction(dict(body))
    assert _plain_transaction(dict(body)) == (checked if common else None)
    assert decode_transaction(orjson.dumps(body)) == checked


@pytest.mark.parametrize(
    "stamp",
    [
        "2018-04-01T00:00:31Z",
        "2000-01-01T00:00:00Z",
        "2099-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",  # before 2000
        "2100-01-01T00:00:00Z",  # from 2100
        "2024-02-29T12:30:59Z",
        "2023-02-29T12:30:59Z",  # no such day
        "2018-04-01T24:00:00Z",
        "2018-04-01T23:60:00Z",
        "2018-04-01T23:59:60Z",
        "2018-04-01t00:00:31Z",
        "2018-04-01T000031.5Z",  # the basic form, with a fraction
        "2018-04-01T00:00:3١Z",  # a digit, but not an ASCII one
        "2018-04-01T00:00:31+00:00",
    ],
)
def test_timestamps_in_the_usual_form_parse_as_any_other_form(stamp: str) -> None:
    try:
        moment = datetime.fromisoformat(stamp)
        expected: float | None = (
            moment.timestamp() if MIN_EVENT_TIME <= moment.timestamp() < MAX_EVENT_TIME else None
        )
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(InvalidInput, match="bad_timestamp"):
            parse_timestamp(stamp)
    else:
        assert parse_timestamp(stamp) == expected
        assert decode_transaction(encode(timestamp=stamp)).event_time == expected


def test_whole_seconds_format_as_strftime_does_across_days_and_years() -> None:
    for event_time in range(1_703_980_000, 1_704_160_000, 599):
        expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event_time))
        assert format_timestamp(float(event_time)) == expected
        assert parse_timestamp(expected) == event_time


@pytest.mark.parametrize(
    ("changes", "common"),
    [
        ({}, True),
        ({"is_fraud": False, "note": "ignored"}, True),
        ({"timestamp": "2018-04-01T02:00:31+02:00"}, False),
        ({"timestamp": "2018-04-01T00:00:31.5Z"}, False),
        ({"customer_id": "x" * 128}, True),
    ],
)
def test_the_common_label_decodes_as_every_check_would_decode_it(
    changes: dict[str, object], common: bool
) -> None:
    body = {**Label("t-1", "c-1", True, 1522540831.0).to_dict(), **changes}
    checked = _checked_label(dict(body))
    assert _plain_label(dict(body)) == (checked if common else None)
    assert decode_label(orjson.dumps(body)) == checked


@pytest.mark.parametrize(
    "changes",
    [
        {"transaction_id": ""},
        {"customer_id": 7},
        {"customer_id": "x" * 129},
        {"is_fraud": 1},
        {"timestamp": 5},
    ],
)
def test_a_label_the_common_case_refuses_is_refused_by_every_check(changes: dict[str, object]) -> None:
    body = {**Label("t-1", "c-1", True, 1522540831.0).to_dict(), **changes}
    assert _plain_label(body) is None
    with pytest.raises(InvalidInput):
        decode_label(orjson.dumps(body))
