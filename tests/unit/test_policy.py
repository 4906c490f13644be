"""Thresholds and declarative rules decide; every non-approval says why."""

from __future__ import annotations

import pytest

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.policy import DecisionPolicy, Rule
from detector.engine.records import Transaction

DENY = {"name": "denied_terminal", "field": "terminal_id", "op": "in", "value": ["bad-1"], "action": "block"}
BIG = {"name": "big_amount", "field": "amount", "op": ">=", "value": 5000, "action": "review"}


def test_the_most_severe_outcome_wins_and_all_fired_rules_are_listed() -> None:
    policy = DecisionPolicy(0.5, 0.9, (Rule.from_dict(DENY), Rule.from_dict(BIG)))
    assert policy.decide({"terminal_id": "bad-1", "amount": 9000}, score=0.6) == (
        "block",
        ["rule:denied_terminal", "rule:big_amount", "score:review"],
    )
    assert policy.decide({"terminal_id": "ok", "amount": 10}, score=0.1) == ("approve", [])
    assert policy.decide({"terminal_id": "ok", "amount": 10}, score=0.5) == ("review", ["score:review"])


def test_rules_with_missing_fields_or_mismatched_types_do_not_fire() -> None:
    rule = Rule.from_dict(BIG)
    assert not rule.fires({})
    assert not rule.fires({"amount": "lots"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**BIG, "op": "~"}, "op must be one of"),
        ({**BIG, "action": "deny"}, "action must be"),
        ({**DENY, "value": "bad-1"}, "take a list"),
        ({"name": "x"}, "lacks"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule.from_dict(spec)


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        DecisionPolicy(review_threshold=0.9, block_threshold=0.5)


def test_engine_reason_codes_name_rules_and_the_features_that_raised_the_score() -> None:
    config = EngineConfig.from_dict(
        {"policy": {"review_threshold": 0.3, "block_threshold": 0.99, "rules": [DENY]}}
    )
    engine = DetectionEngine(config)
    denied = engine.process_transaction(Transaction("t0", 1_700_000_000.0, "c", "bad-1", 20.0))
    assert denied.outcome == "block" and denied.reason_codes == ("rule:denied_terminal",)
    # Teach the model that large amounts are fraud, then score a large amount.
    t = 1_700_000_100.0
    for i in range(400):
        amount, fraud = (900.0, True) if i % 2 else (15.0, False)
        x = engine.extractor.transform_one(
            Transaction(f"x{i}", t, f"c{i}", "m", amount), engine.learner.terminals
        )
        engine.model.learn_one(x, fraud)
    flagged = engine.process_transaction(Transaction("t1", t, "c-new", "m", 950.0))
    assert flagged.outcome in ("review", "block")
    assert flagged.reason_codes[0] == f"score:{flagged.outcome}"
    assert flagged.top_features and all(value > 0 for _, value in flagged.top_features)
    assert {"feature:amount", "feature:log_amount"} & set(flagged.reason_codes)
