"""Hostile input: whatever bytes or values arrive, decoding and scoring fail only with InvalidInput."""

from __future__ import annotations

import contextlib
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine.engine import DetectionEngine
from detector.engine.records import InvalidInput, Label, Transaction, decode_label, decode_transaction

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
timestamps = st.datetimes().map(
    lambda moment: moment.isoformat() + st.sampled_from(["Z", "+05:30", ""]).example()
)
timestamps = st.builds(
    lambda moment, zone: moment.isoformat() + zone,
    st.datetimes(),
    st.sampled_from(["Z", "+05:30", "-00:00", ""]),
)
field_values = json_values | st.text(min_size=1, max_size=200) | timestamps


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_escape_as_anything_but_invalid_input(payload: bytes) -> None:
    for decode in (decode_transaction, decode_label):
        try:
            decode(payload)
        except InvalidInput as error:
            assert error.reason and error.detail


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "transaction_id": field_values,
            "timestamp": field_values,
            "customer_id": field_values,
            "terminal_id": field_values,
            "amount": json_values,
            "currency": field_values,
            "is_fraud": json_values,
            "extra": json_values,
        },
    )
)
def test_arbitrary_json_objects_decode_or_give_a_reason(body: dict) -> None:
    payload = orjson.dumps(body)
    try:
        tx = decode_transaction(payload)
    except InvalidInput:
        return
    assert math.isfinite(tx.amount) and tx.amount >= 0 and tx.transaction_id


def test_deep_and_huge_json_is_refused_cleanly() -> None:
    for payload in (b"[" * 100_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"9" * 60_000):
        try:
            decode_transaction(payload)
        except InvalidInput as error:
            assert error.reason in ("bad_json", "oversized_payload")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(946_684_800, 4_102_444_799),  # 2000..2099
            st.sampled_from(["a", "b", "ü", "🙂", "x" * 128]),
            st.floats(0, 1e12),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_engine_scores_any_valid_stream_with_finite_probabilities(events: list) -> None:
    engine = DetectionEngine()
    for i, (t, card, amount, fraud) in enumerate(events):
        decision = engine.process_transaction(Transaction(f"t{i}", t, card, card[::-1], amount))
        assert 0.0 <= decision.score <= 1.0 and all(math.isfinite(v) for v in decision.features.values())
        with contextlib.suppress(InvalidInput):  # e.g. a label refused with a reason
            engine.process_label(Label(f"t{i}", card, fraud, t + 1.0))
    engine.flush()
    assert engine.stats["transactions_scored"] == len(events)
