"""The engine joins labels to what it scored, applies them in event time, and restores exactly."""

from __future__ import annotations

import random

import pytest

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.model import ModelConfig
from detector.engine.policy import DecisionPolicy
from detector.engine.records import InvalidInput, Label, Transaction
from detector.engine.shared import SharingConfig

T0 = 1_700_000_000.0


def tx(i: int, t: float, card: str = "card", amount: float = 50.0) -> Transaction:
    return Transaction(f"t{i}", t, card, f"m{i % 5}", amount)


def stream(n: int, seed: int, fraud_rate: float = 0.05) -> list[Transaction | Label]:
    """Transactions a minute apart; each label published 30 minutes later, merged in event time."""
    rng = random.Random(seed)
    items: list[tuple[float, int, Transaction | Label]] = []
    for i in range(n):
        t = T0 + 60.0 * i
        fraud = rng.random() < fraud_rate
        card = f"c{rng.randrange(40)}"
        items.append((t, 0, Transaction(f"t{i}", t, card, f"m{rng.randrange(8)}", 900.0 if fraud else 30.0)))
        items.append((t + 1800.0, 1, Label(f"t{i}", card, fraud, t + 1800.0)))
    return [item for _, _, item in sorted(items, key=lambda entry: (entry[0], entry[1]))]


def feed(engine: DetectionEngine, items: list[Transaction | Label]) -> list[tuple]:
    """Outputs that must be identical for equal engines: decisions and events."""
    outputs: list[tuple] = []
    for item in items:
        if isinstance(item, Transaction):
            decision = engine.process_transaction(item)
            outputs.append(
                (decision.transaction.transaction_id, decision.score, decision.outcome, decision.reason_codes)
            )
        else:
            engine.process_label(item)
        outputs.extend(
            (event.kind, event.event_time, event.model_generation) for event in engine.pop_events()
        )
    return outputs


def test_label_is_learned_on_exactly_the_features_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = DetectionEngine()
    learned: list[tuple[dict, bool]] = []
    original = engine.model.learn_one

    def learn_one(x: dict[str, float], is_fraud: bool) -> None:
        learned.append((x, is_fraud))
        original(x, is_fraud)

    monkeypatch.setattr(engine.model, "learn_one", learn_one)
    scored = engine.process_transaction(tx(0, T0))
    engine.process_transaction(tx(1, T0 + 10))  # changes the card's state after t0 was scored
    engine.process_label(Label("t0", "card", True, T0 + 20))
    engine.process_transaction(tx(2, T0 + 60))  # the label's epoch (60 s) is closed: it is learned
    assert learned == [(scored.features, True)]


def test_labels_wait_for_event_time_and_late_ones_are_released_at_once() -> None:
    """A released label is learned when its epoch closes: with 1 s epochs, at the next second."""
    engine = DetectionEngine(EngineConfig(sharing=SharingConfig(epoch=1.0)))
    engine.process_transaction(tx(0, T0))
    engine.process_label(Label("t0", "card", False, T0 + 100))
    engine.process_transaction(tx(1, T0 + 100))  # same instant: not yet after the label
    assert engine.model.labels_learned == 0
    engine.process_transaction(tx(2, T0 + 101))
    assert engine.model.labels_learned == 1
    engine.process_label(Label("t1", "card", False, T0 + 100.5))  # event time already passed it
    assert engine.stats["labels_late"] == 1 and engine.stats["labels_learned"] == 2
    engine.process_transaction(tx(3, T0 + 102))
    assert engine.model.labels_learned == 2


def test_duplicate_unknown_and_inconsistent_labels_are_counted_not_learned() -> None:
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0))
    engine.process_transaction(tx(1, T0 + 1))
    with pytest.raises(InvalidInput, match="label_mismatch"):
        engine.process_label(Label("t0", "someone-else", True, T0 + 10))
    with pytest.raises(InvalidInput, match="label_before_transaction"):
        engine.process_label(Label("t1", "card", True, T0))
    for label in (
        Label("t0", "card", True, T0 + 10),
        Label("t0", "card", True, T0 + 11),
        Label("nope", "c", True, T0 + 12),
    ):
        engine.process_label(label)
    engine.flush()
    assert engine.model.labels_learned == 1
    assert engine.stats["labels_duplicate"] == 1 and engine.stats["labels_unknown"] == 1


def test_a_transaction_id_is_scored_once() -> None:
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0))
    with pytest.raises(InvalidInput) as error:
        engine.process_transaction(tx(0, T0 + 5))
    assert error.value.reason == "duplicate_transaction"
    assert engine.stats["transactions_scored"] == 1


def test_unlabelled_scores_expire_after_the_horizon_and_are_counted() -> None:
    engine = DetectionEngine(EngineConfig(label_horizon=3600.0))
    for i in range(100):
        engine.process_transaction(tx(i, T0 + i))
    engine.process_transaction(tx(100, T0 + 7200))  # its vector reaches the learner when its epoch closes
    assert len(engine.pending) == 0 and engine.stats["pending_expired"] == 100
    engine.process_label(Label("t5", "card", True, T0 + 7300))
    engine.flush()
    assert engine.stats["labels_unknown"] == 1


def test_the_label_queue_is_bounded() -> None:
    engine = DetectionEngine(EngineConfig(max_queued_labels=2))
    engine.process_label(Label("a", "c", True, T0))
    engine.process_label(Label("b", "c", True, T0))
    with pytest.raises(InvalidInput) as error:
        engine.process_label(Label("c", "c", True, T0))
    assert error.value.reason == "label_queue_full"


@pytest.mark.parametrize("kind", ["logistic_regression", "hoeffding_adaptive_tree"])
def test_same_inputs_same_outputs(kind: str) -> None:
    items = stream(1500, seed=3)
    config = EngineConfig.from_dict({"model": {"kind": kind}})
    assert feed(DetectionEngine(config), items) == feed(DetectionEngine(config), items)


@pytest.mark.parametrize("kind", ["logistic_regression", "hoeffding_adaptive_tree", "adaptive_random_forest"])
def test_restored_snapshot_continues_exactly_like_the_original(kind: str) -> None:
    items = stream(1200, seed=4)
    original = DetectionEngine(EngineConfig.from_dict({"model": {"kind": kind, "forest_size": 3}}))
    feed(original, items[:1300])
    restored = DetectionEngine.restore(original.snapshot())
    assert restored.gauges() == original.gauges() and restored.stats == original.stats
    assert feed(restored, items[1300:]) == feed(original, items[1300:])
    assert restored.stats == original.stats
    assert original.model.labels_learned > 500


def test_restore_refuses_foreign_bytes() -> None:
    with pytest.raises(ValueError, match="not a DetectionEngine snapshot"):
        DetectionEngine.restore(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="incompatible version"):
        DetectionEngine.restore(b"fraud-engine/1\n" + DetectionEngine().snapshot().split(b"\n", 1)[1])
    with pytest.raises(ValueError, match="unreadable DetectionEngine snapshot"):
        DetectionEngine.restore(DetectionEngine().snapshot()[:-40])


def test_a_far_future_timestamp_cannot_release_queued_labels_or_expire_state() -> None:
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0))
    engine.process_label(Label("t0", "card", True, T0 + 3 * 86400))
    rogue = engine.process_transaction(tx(1, T0 + 365 * 86400))  # a clock a year ahead
    assert "skew:future_event_time" in rogue.reason_codes
    assert engine.watermark == T0  # not moved
    assert engine.model.labels_learned == 0 and len(engine.scorer.index) == 2
    normal = engine.process_transaction(tx(2, T0 + 60))
    assert normal.reason_codes == () and engine.stats["transactions_future_skew"] == 1


def test_late_transactions_are_still_decided_and_flagged_beyond_the_tolerance() -> None:
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0 + 7200))
    slightly = engine.process_transaction(tx(1, T0 + 7200 - 600))
    very = engine.process_transaction(tx(2, T0))
    assert slightly.reason_codes == () and engine.stats["transactions_out_of_order"] == 1
    assert very.reason_codes == ("late:event_time",) and engine.stats["transactions_too_late"] == 1
    assert engine.watermark == T0 + 7200


def test_a_real_jump_in_time_is_caught_up_without_flagging_normal_gaps() -> None:
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0))
    overnight = engine.process_transaction(tx(1, T0 + 10 * 3600))
    assert overnight.reason_codes == () and engine.watermark == T0 + 10 * 3600
    after_silence = [engine.process_transaction(tx(i, T0 + 4 * 86400 + i)) for i in range(2, 5)]
    assert [d.reason_codes for d in after_silence] == [("skew:future_event_time",)] * 2 + [()]
    assert engine.watermark == T0 + 4 * 86400 + 4  # the third in a row confirms the jump


def test_a_far_future_transaction_does_not_stop_old_state_from_expiring() -> None:
    engine = DetectionEngine(EngineConfig(label_horizon=86400.0))
    engine.process_transaction(tx(0, T0))
    engine.process_transaction(Transaction("future", T0 + 60 * 365 * 86400.0, "bad-clock", "m", 1.0))
    for day in range(1, 40):  # normal traffic for weeks: all but the last days' state must expire
        engine.process_transaction(tx(day, T0 + day * 86400.0, card=f"c{day}"))
    assert len(engine.pending) <= 3
    assert "bad-clock" not in engine.extractor.cards and len(engine.extractor.cards) <= 32


def test_a_far_future_transaction_counts_as_happening_at_the_watermark() -> None:
    """Its card's later activity stays in its windows, and a label for it is accepted."""

    def features_after(rogue_time: float) -> list[dict[str, float]]:
        engine = DetectionEngine()
        for i in range(5):
            engine.process_transaction(tx(i, T0 + 60 * i))
        engine.process_transaction(tx(5, rogue_time))
        engine.process_label(Label("t5", "card", True, T0 + 300))
        later = [engine.process_transaction(tx(i, T0 + 60 * i)).features for i in range(6, 10)]
        assert engine.stats["labels_learned"] == 1
        return later

    assert features_after(T0 + 40 * 86400) == features_after(T0 + 240)  # the watermark then


def test_a_restored_engine_takes_new_decision_settings_but_refuses_another_model() -> None:
    engine = DetectionEngine()
    engine.process_transaction(tx(0, T0))
    restored = DetectionEngine.restore(engine.snapshot())
    restored.reconfigure(EngineConfig(policy=DecisionPolicy(review_threshold=0.0)))
    assert restored.process_transaction(tx(1, T0 + 60)).outcome == "review"
    with pytest.raises(ValueError, match="another model"):
        restored.reconfigure(EngineConfig(model=ModelConfig(kind="hoeffding_adaptive_tree")))
    assert restored.config.model.kind == "logistic_regression"
