"""Every reason code the engine can give has a sentence, whatever windows the features use."""

from __future__ import annotations

import pytest

from detector.audit.reasons import sentence
from detector.engine.engine import FUTURE_SKEW, TOO_LATE
from detector.engine.features import DAY, HOUR, FeatureConfig, FeatureExtractor

CONFIGS = {
    "default": FeatureConfig(),
    "other windows and extras": FeatureConfig(
        card_windows=(2 * HOUR, 3 * DAY), terminal_windows=(90.0,), risk_windows=(14 * DAY,),
        extra_numeric=("mcc",),
    ),
    "opt-in features, a 10-minute window": FeatureConfig(
        card_windows=(600.0, DAY), card_terminal_recency=True, terminal_amount_ratio=True
    ),
}  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_feature_name_has_a_sentence(config: FeatureConfig) -> None:
    names = FeatureExtractor(config).names
    missing = [name for name in names if sentence(f"feature:{name}") is None]
    assert not missing


def test_windows_read_as_words() -> None:
    assert sentence("feature:card_count_1h") == "The card's number of transactions in the hour before."
    assert (
        sentence("feature:terminal_count_90s")
        == "The terminal's number of transactions in the 90 seconds before."
    )
    assert sentence("feature:card_mean_amount_3d") == "The card's mean amount over the 3 days before."
    assert sentence("feature:card_count_10m") == "The card's number of transactions in the 10 minutes before."


def test_thresholds_rules_and_event_time_flags_have_sentences() -> None:
    for code in ("score:review", "score:block", FUTURE_SKEW, TOO_LATE):
        assert sentence(code)
    assert sentence("rule:large_amount") == "The policy rule large_amount matched this transaction."


def test_an_unknown_code_has_no_sentence_rather_than_a_wrong_one() -> None:
    for code in ("feature:no_such_feature", "feature:card_count_xyz", "bogus", "rule:"):
        assert sentence(code) is None
