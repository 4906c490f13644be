"""Features describe only the past: earlier transactions, and labels whose time has come."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime

import pytest

from detector.engine import MODEL_KINDS
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.expiring import ExpiringStore
from detector.engine.features import DAY, HOUR, FeatureConfig, FeatureExtractor
from detector.engine.records import Label, Transaction
from detector.engine.terminals import ACTIVITY, TerminalChange, TerminalTable

T0 = 1_700_000_000.0  # a Tuesday, 22:13 UTC


def tx(i: int, t: float, card: str = "card", terminal: str = "term", amount: float = 50.0) -> Transaction:
    return Transaction(f"t{i}", t, card, terminal, amount)


def test_card_velocity_and_amount_profile_over_windows() -> None:
    extractor = FeatureExtractor(FeatureConfig())
    history = [
        tx(0, T0 - 20 * DAY, amount=10.0),
        tx(1, T0 - 2 * DAY, amount=20.0),
        tx(2, T0 - 0.5 * HOUR, amount=30.0),
    ]
    for past in history:
        extractor.learn_one(past)
    features = extractor.transform_one(tx(3, T0, amount=120.0), TerminalTable(extractor.config))
    assert features["card_count_1h"] == 1
    assert features["card_count_1d"] == 1
    assert features["card_count_7d"] == 2
    assert features["card_count_30d"] == 3
    assert features["card_mean_amount_7d"] == pytest.approx(25.0)
    assert features["card_amount_ratio_30d"] == pytest.approx(120.0 / 20.0)
    assert features["card_amount_zscore_30d"] > 0
    assert features["card_new_terminal"] == 0.0
    assert features["card_log_seconds_since_last"] == pytest.approx(math.log1p(0.5 * HOUR))


def test_a_transaction_never_counts_itself_or_anything_after_it() -> None:
    extractor = FeatureExtractor(FeatureConfig())
    first = extractor.transform_one(tx(0, T0), TerminalTable(extractor.config))
    assert (
        first["card_count_30d"] == 0 and first["terminal_count_1d"] == 0 and first["card_new_terminal"] == 1
    )


def test_calendar_features_in_utc() -> None:
    extractor = FeatureExtractor(FeatureConfig())
    saturday_3am = datetime(2023, 11, 18, 3, 0, tzinfo=UTC).timestamp()
    features = extractor.transform_one(tx(0, saturday_3am), TerminalTable(extractor.config))
    assert features["is_weekend"] == 1.0 and features["is_night"] == 1.0
    weekday = extractor.transform_one(tx(1, T0), TerminalTable(extractor.config))
    assert weekday["is_weekend"] == 0.0 and weekday["is_night"] == 0.0


def test_state_of_idle_entities_is_evicted() -> None:
    config = FeatureConfig(card_windows=(HOUR, DAY), terminal_windows=(DAY,), risk_windows=(2 * DAY,))
    extractor, terminals = FeatureExtractor(config), TerminalTable(config)
    for i, past in enumerate(tx(i, T0 + i * 60.0, card=f"c{i}", terminal=f"m{i % 10}") for i in range(1000)):
        extractor.learn_one(past)
        terminals.apply([TerminalChange(i, past.terminal_id, past.event_time, ACTIVITY, past.amount)])
    assert len(extractor.cards) == 1000 and len(terminals) == 10
    extractor.learn_one(tx(9999, T0 + 10 * DAY, card="late", terminal="m0"))
    terminals.apply([TerminalChange(1000, "m0", T0 + 10 * DAY, ACTIVITY, 50.0)])
    assert len(extractor.cards) == 1 and len(terminals) == 1


def test_terminal_risk_uses_only_labels_known_at_event_time() -> None:
    """A fraud label stamped T raises the terminal's risk for transactions after T, never before,
    even when the label is handed to the engine before those earlier transactions."""
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0, card="victim", terminal="skimmer"))
    known_at = T0 + DAY
    engine.process_label(Label("t0", "victim", True, known_at))  # arrives early, in processing order
    before = engine.process_transaction(tx(1, known_at - 60.0, card="other", terminal="skimmer"))
    after = engine.process_transaction(tx(2, known_at + 60.0, card="third", terminal="skimmer"))
    assert before.features["terminal_risk_7d"] == 0.0 and before.features["terminal_frauds_7d"] == 0.0
    assert after.features["terminal_frauds_7d"] == 1.0 and after.features["terminal_risk_7d"] == 1.0
    victim = engine.process_transaction(tx(3, known_at + 120.0, card="victim", terminal="elsewhere"))
    assert victim.features["card_known_frauds"] == 1.0


def test_features_of_a_transaction_do_not_depend_on_labels_from_its_future() -> None:
    """Same transactions, with and without a flood of future-stamped labels fed first: same features."""
    stream = [
        tx(i, T0 + i * 600.0, card=f"c{i % 7}", terminal=f"m{i % 3}", amount=5.0 + i) for i in range(60)
    ]
    plain, flooded = DetectionEngine(), DetectionEngine()
    for i, transaction in enumerate(stream):
        a = plain.process_transaction(transaction)
        if i == 30:
            for earlier in stream[:30]:
                flooded.process_label(
                    Label(earlier.transaction_id, earlier.customer_id, True, T0 + 365 * DAY)
                )
        b = flooded.process_transaction(transaction)
        assert a.features == b.features and a.score == b.score


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_numeric_extra_beyond_any_amount_counts_as_missing_and_every_model_stays_sane(kind: str) -> None:
    config = EngineConfig.from_dict({"model": {"kind": kind}, "features": {"extra_numeric": ["x"]}})
    engine = DetectionEngine(config)
    scores = []
    for i in range(300):
        t = T0 + 30.0 * i
        extras = {"x": 1.7e308 if i == 100 else float(i % 7)}
        decision = engine.process_transaction(
            Transaction(f"t{i}", t, f"c{i % 20}", "m", 20.0 + i % 50, extras=extras)
        )
        scores.append(decision.score)
        assert decision.features["extra_x"] == (0.0 if i == 100 else float(i % 7))
        engine.process_label(Label(f"t{i}", f"c{i % 20}", i % 10 == 0, t + 1.0))
    assert all(math.isfinite(score) for score in scores)


def test_opt_in_features_time_at_this_terminal_and_amount_against_the_terminals_mean() -> None:
    config = FeatureConfig(card_terminal_recency=True, terminal_amount_ratio=True)
    extractor, terminals = FeatureExtractor(config), TerminalTable(config)
    extractor.learn_one(tx(0, T0 - 3 * DAY, terminal="shop"))
    extractor.learn_one(tx(1, T0 - HOUR, terminal="elsewhere"))
    terminals.apply([TerminalChange(0, "shop", T0 - 2 * DAY, ACTIVITY, a) for a in (10.0, 30.0)])
    here = extractor.transform_one(tx(2, T0, terminal="shop", amount=60.0), terminals)
    assert here["card_log_seconds_since_terminal"] == pytest.approx(math.log1p(3 * DAY))
    assert here["card_log_seconds_since_last"] == pytest.approx(math.log1p(HOUR))
    assert here["terminal_amount_ratio_7d"] == pytest.approx(60.0 / 20.0)
    new = extractor.transform_one(tx(3, T0, terminal="new", amount=60.0), terminals)
    assert new["card_log_seconds_since_terminal"] == pytest.approx(math.log1p(config.entity_ttl))
    assert new["terminal_amount_ratio_7d"] == 1.0  # no activity: no evidence either way


def test_the_card_profile_is_the_longest_window_whatever_the_order() -> None:
    shuffled = FeatureExtractor(FeatureConfig(card_windows=(30 * DAY, 600.0, DAY)))
    assert "card_amount_ratio_30d" in shuffled.names and "card_count_10m" in shuffled.names
    for past in (tx(0, T0 - 20 * DAY, amount=10.0), tx(1, T0 - 60.0, amount=30.0)):
        shuffled.learn_one(past)
    features = shuffled.transform_one(tx(2, T0, amount=40.0), TerminalTable(shuffled.config))
    assert features["card_amount_ratio_30d"] == pytest.approx(40.0 / 20.0)
    assert features["card_count_10m"] == 1


def test_a_terminal_table_restores_from_its_compact_form_and_from_the_former_one() -> None:
    """Checkpoints pickle the table as one bytes object per terminal; one pickled object by object,
    as checkpoints of earlier versions hold it, restores too, and both read as the original."""
    config = FeatureConfig(max_terminals=3)
    table = TerminalTable(config)
    t0 = 1_700_000_000.0
    table.apply(
        TerminalChange(epoch, f"m{i % 5}", t0 + 600.0 * i, ACTIVITY if i % 3 else 1, float(i % 2 or i))
        for i in range(40)
        for epoch in (i // 10,)
    )
    former = TerminalTable.__new__(TerminalTable)
    former.__setstate__(dict(table.__dict__))  # the state as pickled before the compact form
    compact = pickle.loads(pickle.dumps(table))
    assert table.terminals.evicted_for_size > 0 and len(table) == 3
    assert isinstance(table.terminals, ExpiringStore)
    for restored in (compact, former):
        assert isinstance(restored.terminals, ExpiringStore)
        assert list(restored.terminals.keys()) == list(table.terminals.keys())
        for terminal in ("m0", "m2", "m4"):
            expected: dict[str, float] = {"amount": 10.0}
            table.add_features(expected, terminal, t0 + 30_000.0)
            features: dict[str, float] = {"amount": 10.0}
            restored.add_features(features, terminal, t0 + 30_000.0)
            assert features == expected
