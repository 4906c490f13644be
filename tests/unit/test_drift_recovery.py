"""Drift detection and recovery on River's own generators, through the real engine path.

Agrawal samples become transactions whose numeric attributes are extra features; the class is the
"fraud" label, published one hour (60 transactions) after its transaction. The class function is
switched at a known position. Figures are printed (run with -s) and the properties asserted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from river.datasets import synth

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.outputs import DRIFT_DETECTED, MODEL_SWAPPED
from detector.engine.records import Label, Transaction
from detector.evaluation import roc_auc

ATTRIBUTES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
SPACING = 60.0  # seconds between transactions
LABEL_DELAY = 3600.0  # so labels trail their transactions by 60 events
LABEL_LAG_EVENTS = int(LABEL_DELAY / SPACING)


def agrawal(n: int, drift_at: int | None, fraud_share: float, seed: int) -> list[tuple[dict, bool]]:
    """``n`` samples of Agrawal function 0, then function 2 from ``drift_at``; positives thinned."""
    before = iter(synth.Agrawal(classification_function=0, seed=seed))
    after = iter(synth.Agrawal(classification_function=2, seed=seed + 1))
    keep = random.Random(seed)
    samples: list[tuple[dict, bool]] = []
    while len(samples) < n:
        x, y = next(before if drift_at is None or len(samples) < drift_at else after)
        if y and keep.random() > fraud_share:
            continue
        samples.append((x, bool(y)))
    return samples


@dataclass
class Run:
    scores: list[float]
    events: list[tuple[int, str, dict]]  # (transaction index, event kind, detail)

    def first(self, kind: str, after: int = 0) -> int | None:
        return next((i for i, k, _ in self.events if k == kind and i >= after), None)

    def count(self, kind: str) -> int:
        return sum(k == kind for _, k, _ in self.events)


def run_engine(samples: list[tuple[dict, bool]], drift_handling: bool) -> Run:
    config = EngineConfig.from_dict(
        {
            "model": {"kind": "hoeffding_adaptive_tree"},
            "features": {"extra_numeric": list(ATTRIBUTES)},
            "drift": {"enabled": drift_handling},
        }
    )
    engine = DetectionEngine(config)
    run = Run([], [])
    for i, (x, is_fraud) in enumerate(samples):
        t = 1_700_000_000.0 + SPACING * i
        tx = Transaction(f"t{i}", t, f"c{i % 1000}", f"m{i % 50}", float(x["loan"]), extras=x)
        run.scores.append(engine.process_transaction(tx).score)
        run.events.extend((i, event.kind, event.detail) for event in engine.pop_events())
        engine.process_label(Label(tx.transaction_id, tx.customer_id, is_fraud, t + LABEL_DELAY))
    return run


def windowed_auc(samples: list[tuple[dict, bool]], scores: list[float], start: int, end: int) -> float:
    return roc_auc([y for _, y in samples[start:end]], scores[start:end])


@pytest.mark.slow
@pytest.mark.parametrize(("fraud_share", "max_delay"), [(1.0, 300), (0.05, 3000)])
def test_drift_is_detected_soon_after_post_drift_labels_arrive(fraud_share: float, max_delay: int) -> None:
    drift_at = 15_000
    samples = agrawal(25_000, drift_at, fraud_share, seed=11)
    run = run_engine(samples, drift_handling=True)
    labels_arrive = drift_at + LABEL_LAG_EVENTS
    detected = run.first(DRIFT_DETECTED, after=drift_at)
    rate = sum(y for _, y in samples) / len(samples)
    print(
        f"\nfraud rate {rate:.3f}: drift at {drift_at}, post-drift labels from {labels_arrive},"
        f" detected at {detected}"
    )
    assert detected is not None
    assert labels_arrive <= detected <= labels_arrive + max_delay
    assert run.first(DRIFT_DETECTED) == detected, "no alarm before the drift"


@pytest.mark.slow
@pytest.mark.parametrize("fraud_share", [1.0, 0.05])
def test_few_false_alarms_on_a_long_stationary_stream(fraud_share: float) -> None:
    samples = agrawal(30_000, None, fraud_share, seed=12)
    run = run_engine(samples, drift_handling=True)
    alarms, swaps = run.count(DRIFT_DETECTED), run.count(MODEL_SWAPPED)
    print(
        f"\nstationary, fraud share kept {fraud_share}: {alarms} drift alarms, {swaps} model swaps in 30,000"
    )
    assert alarms <= 2
    assert swaps == 0


@pytest.mark.slow
def test_recovery_after_drift_is_no_worse_than_without_handling() -> None:
    drift_at, n = 12_000, 30_000
    samples = agrawal(n, drift_at, 1.0, seed=13)
    handled = run_engine(samples, drift_handling=True)
    unhandled = run_engine(samples, drift_handling=False)
    windows = [(drift_at - 5_000, drift_at), (drift_at, drift_at + 5_000), (n - 5_000, n)]
    with_handling = [windowed_auc(samples, handled.scores, a, b) for a, b in windows]
    without = [windowed_auc(samples, unhandled.scores, a, b) for a, b in windows]
    print(
        "\nprequential AUC before / just after / end:"
        f" with handling {[round(v, 3) for v in with_handling]}, without {[round(v, 3) for v in without]};"
        f" swaps {[(i, d) for i, k, d in handled.events if k == MODEL_SWAPPED]}"
    )
    assert with_handling[1] < with_handling[0] - 0.03, "the switch must hurt at first, or this tests nothing"
    assert with_handling[2] >= without[2] - 0.02
    assert with_handling[2] >= 0.85
