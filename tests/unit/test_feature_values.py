"""Every feature value and every decision stays exactly what it was when these digests were taken.

The feature code is tuned for speed (names built once, fewer dicts, fast paths in the windows and
stores); a faster version must compute the very same floats. The digests were taken over a
simulated stream, and the same stream with transactions delivered out of order, with the feature
code before that tuning (with the terminal state and model shared at event-time epochs,
docs/shared-learning.md): a change that moves any value by one ulp, or reorders or renames a
feature, changes them.
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
    "in order": "04cabe10c9c4c47ca3a511f36435d7bf91aa31a5418a6b1c6632fd47bdaae866",
    "out of order": "fdd62bb7809d2b7018385d4667f6ad1c6e4175525bcec1b06b57abe65b696c67",
}
DECISIONS = {
    "in order": "f5ab92a539496a6e83c969728757da0a4a79e648bb67cee10e774095b8fc7fba",
    "out of order": "f63a1b22fb0e35ea304367516acdae1bab15ea4954937734b7ef24a2a00d4871",
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
