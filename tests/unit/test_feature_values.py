"""Every feature value and every decision stays exactly what it was when these digests were taken.

The feature code is tuned for speed (names built once, fewer dicts, fast paths in the windows and
stores); a faster version must compute the very same floats. The digests were taken over a
simulated stream, and the same stream with transactions delivered out of order, with the feature
code before that tuning (with the terminal state and model shared at event-time epochs,
docs/shared-learning.md), and taken again when the simulator's stream changed (the scenarios made
less separable, docs/models.md) with feature code that still matched the earlier digests on the
earlier stream: a change that moves any value by one ulp, or reorders or renames a feature, changes
them.
"""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from detector.engine.engine import DetectionEngine
from detector.engine.records import Label, Transaction
from devkit.streams import simulated_stream

FEATURES = {
    "in order": "5324e56a98fef77980915dd2b92f53f5a6603d71058bef08cfcfdada21ef6191",
    "out of order": "c194902319e5a5730e71d438a50f8cc53c5de4371fc62e47829f777957f0431a",
}
DECISIONS = {
    "in order": "e487e83f980d5d1412e7c3378c5eacc3d52ba0c5ab43196eaf459378fedb917a",
    "out of order": "135fcb5826ae739fd7d8d1ae449e0ff481ad64d4f00e4d002ed70f3a74be4552",
}


def stream(order: str) -> list[Transaction | Label]:
    items = simulated_stream(3_000, 300, seed=7)
    if order == "out of order":  # each record moved by up to 20 places: late and early events
        jitter = random.Random(3)
        items = [
            item for _, item in sorted((i + jitter.uniform(0, 20), item) for i, item in enumerate(items))
        ]
    return items


def digests(items: list[Transaction | Label]) -> tuple[str, str]:
    """(features, decisions) digests: names and values bit for bit; scores, outcomes and reasons."""
    engine = DetectionEngine()
    features, decisions = hashlib.sha256(), hashlib.sha256()
    for item in items:
        if isinstance(item, Label):
            engine.process_label(item)
            continue
        decision = engine.process_transaction(item)
        features.update(",".join(decision.features).encode())
        features.update(struct.pack(f"{len(decision.features)}d", *decision.features.values()))
        decisions.update(struct.pack("d", decision.score))
        decisions.update(" ".join((decision.outcome, *decision.reason_codes)).encode())
    return features.hexdigest(), decisions.hexdigest()


@pytest.mark.parametrize("order", sorted(FEATURES))
def test_feature_values_and_decisions_are_bit_for_bit_unchanged(order: str) -> None:
    assert digests(stream(order)) == (FEATURES[order], DECISIONS[order])
