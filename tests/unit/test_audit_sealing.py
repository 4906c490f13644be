"""A decision's record, sealed without sorting its keys, is byte for byte what sealing it with
sorted keys writes, so it verifies as every other record does."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detector.audit.chain import GENESIS, ChainState, verify_record
from detector.audit.records import Provenance, decision_record
from detector.engine.outputs import Decision
from detector.engine.records import Transaction


def decision(event_time: float, currency: str | None, top: tuple[tuple[str, float], ...]) -> Decision:
    return Decision(
        transaction=Transaction('t-"1"\n', event_time, "c-é", "m-1", 1e-7, currency, {}),
        score=0.1 + 0.2,
        outcome="review",
        reason_codes=("score:review", *(f"feature:{name}" for name, _ in top)),
        top_features=top,
        features={"amount": 1e-7, "z": 3.0, "a": -0.0, "tx_count_1d": 1e16},
        model_kind="logistic_regression",
        model_generation=4,
        drift_state="warning",
        review_threshold=0.3,
        block_threshold=0.7,
        model_version=12,
    )


def sorted_everywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(map(sorted_everywhere, value.values()))
    return all(map(sorted_everywhere, value)) if isinstance(value, list) else True


@pytest.mark.parametrize("key", [None, b"chain-key"])
@pytest.mark.parametrize("pseudonym_key", [None, b"pseudonym-key"])
def test_sealing_a_decision_unsorted_writes_the_sorted_bytes(
    key: bytes | None, pseudonym_key: bytes | None
) -> None:
    decisions = [
        decision(1767225600.0, "EUR", ()),
        decision(1767225600.25, None, (("amount", 0.5), ("z", -0.25))),
    ]
    sorted_chain, unsorted_chain = ChainState(partition=1, key=key), ChainState(partition=1, key=key)
    previous = GENESIS
    for seq, made in enumerate(decisions):
        provenance = Provenance("transactions", 1, 40 + seq, "instance-1")
        record = decision_record(made, "f1", provenance, 1.23456, pseudonym_key)
        assert sorted_everywhere({k: v for k, v in record.items() if k != "chain"})
        expected = sorted_chain.seal_encoded(dict(record))
        written = unsorted_chain.seal_sorted(record)
        assert written == expected
        assert verify_record(orjson.loads(written), seq, previous, key=key, partition=1) is None
        previous = unsorted_chain.last_hash
    assert unsorted_chain == sorted_chain
