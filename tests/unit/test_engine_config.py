"""The engine config is checked when it is built: a bad value stops the start, not the first transaction."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.features import DAY, HOUR
from detector.engine.records import Transaction
from detector.validation import parse_duration

RULE = {"name": "big", "field": "amount", "op": ">", "value": 5000, "action": "review"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"label_horizon": "60x"}, "label_horizon: not a duration: '60x'"),
        ({"label_horizon": 0}, "label_horizon: must be above 0"),
        ({"max_pending": "lots"}, "max_pending: expected an integer, got 'lots'"),
        ({"max_queued_labels": 0}, "max_queued_labels: must be at least 1, got 0"),
        ({"future_confirmations": 0}, "future_confirmations: must be at least 1"),
        ({"max_lateness": -1}, "max_lateness: a duration must be finite and >= 0"),
        ({"top_reasons": -1}, "top_reasons: must be at least 0"),
        ({"features": {"card_windows": []}}, "features.card_windows: needs at least 1 value(s)"),
        ({"features": {"card_windows": ["1h", "-1d"]}}, "features.card_windows[1]: not a duration"),
        ({"features": {"resolution": 0}}, "features.resolution: must be at least 1"),
        ({"features": {"max_cards": "many"}}, "features.max_cards: expected an integer"),
        ({"model": {"kind": "svm"}}, "model.kind: must be 'logistic_regression'"),
        ({"model": {"prior_fraud_rate": 1.5}}, "model.prior_fraud_rate: must be below 1"),
        ({"model": {"forest_size": 0}}, "model.forest_size: must be at least 1"),
        ({"drift": {"miss_detector": "kswin"}}, "drift.miss_detector: must be 'hddm_a'"),
        ({"drift": {"recovery": "retrain"}}, "drift.recovery: must be 'swap' or 'reset'"),
        ({"drift": {"challenge_every": 0}}, "drift.challenge_every: must be at least 1"),
        ({"policy": {"review_threshold": 1.5}}, "policy.review_threshold: must be at most 1"),
        ({"policy": {"block_threshold": -0.1}}, "policy.block_threshold: must be at least 0"),
        ({"policy": {"review_threshold": 0.95}}, "policy: thresholds must satisfy review_threshold <="),
        ({"policy": {"rules": [{**RULE, "op": "~"}]}}, "policy.rules[0].op: rule 'big': op must be one of"),
        ({"policy": {"rules": [{**RULE, "action": "deny"}]}}, "policy.rules[0].action: rule 'big': action"),
        ({"policy": {"rules": [{**RULE, "op": "in"}]}}, "policy.rules[0].value: rule 'big': 'in' and"),
        ({"policy": {"rules": [{"name": "x"}]}}, "policy.rules[0].field: required"),
        ({"policy": {"rules": [{**RULE, "severity": 1}]}}, "policy.rules[0].severity: unknown setting"),
        ({"modle": {}}, "modle: unknown setting"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_it(values: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        EngineConfig.from_dict(values)
    headline, *lines = str(error.value).splitlines()
    assert headline == "invalid engine config:"
    assert any(line.strip().startswith(message) for line in lines), lines


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as error:
        EngineConfig.from_dict({"label_horizon": "60x", "max_pending": "lots", "model": {"kind": "svm"}})
    assert len(str(error.value).splitlines()) == 4


def test_durations_take_the_simulators_syntax() -> None:
    config = EngineConfig.from_dict(
        {"label_horizon": "7d", "max_lateness": "30m", "features": {"card_windows": ["1h", "1d", 45]}}
    )
    assert config.label_horizon == 7 * DAY and config.max_lateness == 1800.0
    assert config.features.card_windows == (HOUR, DAY, 45.0)
    assert [parse_duration(text) for text in ("45s", "30m", "1h", "2w", "90")] == [
        45,
        1800,
        3600,
        14 * DAY,
        90,
    ]


def test_a_direct_construction_is_checked_too() -> None:
    lots: Any = "lots"  # not an int, on purpose
    with pytest.raises(ValueError, match="max_pending"):
        EngineConfig(max_pending=lots)


def test_a_validated_config_pickles_and_runs() -> None:
    config = EngineConfig.from_dict(
        {"label_horizon": "30d", "policy": {"rules": [{**RULE, "op": "in", "value": [1]}]}}
    )
    assert pickle.loads(pickle.dumps(config)) == config
    assert config.policy.rules[0].value == frozenset({1})
    engine = DetectionEngine.restore(DetectionEngine(config).snapshot())
    assert engine.config == config
    decision = engine.process_transaction(Transaction("t1", 1_700_000_000.0, "c1", "m1", 20.0))
    assert decision.outcome == "approve"
