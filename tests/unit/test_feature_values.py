"""Every feature value and every decision stays exactly what it was when these digests were taken.

The feature code is tuned for speed (names built once, fewer dicts, fast paths in the windows and
stores); a faster version must compute the very same floats. The digests were taken over a
simulated stream, and the same stream with transactions delivered out of order, with the feature
code before that tuning: a change that moves any value by one ulp, or reorders or renames a
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
    "in order": "aaf1d192888dfb36b410fb015d7563f75358bb9ed767b686a6c9b43b580bb43b",
    "out of order": "7bfc0757d2e784dff4b413a9ab2e121fd1852e241d85440a47bfe11aba26dfc3",
}
DECISIONS = {
    "in order": "8afc5fdeb09929cca6c67f08133c6475843dfb9bbd6e77d26db2c8281fe7748a",
    "out of order": "ca260e7633d8c809a29d9c6c69246fa297efd25542e397b9300b2429f1958984",
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
