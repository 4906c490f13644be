"""Simulated streams for tests: short, with labels within hours, so models learn during a test."""

from __future__ import annotations

from dataclasses import replace

from detector.engine.records import Label, Transaction
from producers.config import preset
from producers.labels import DelayDistribution
from producers.simulator import SimulatedTransaction, simulate

HOUR = 3600.0


def short_label_stream(
    transactions: int, seed: int, cards: int, terminals: int, fraud_delay: float = 4 * HOUR
) -> list[Transaction | Label]:
    """The default preset's stream as published: frauds labelled after ``fraud_delay``, the rest
    after an hour."""
    base = preset("default")
    config = replace(
        base,
        seed=seed,
        days=None,
        max_transactions=transactions,
        population=replace(base.population, cards=cards, terminals=terminals),
        labels=replace(
            base.labels, fraud_delay=DelayDistribution(fraud_delay), legit_delay=DelayDistribution(HOUR)
        ),
    )
    return [item.transaction if isinstance(item, SimulatedTransaction) else item for item in simulate(config)]
