"""Simulated streams of a given size, for runs that count transactions rather than days."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from detector.engine.records import Label, Transaction
from producers.config import SimulationConfig, preset
from producers.simulator import SimulatedTransaction, simulate


def sized_config(
    transactions: int, cards: int, seed: int = 1, terminals: int | None = None, **changes: Any
) -> SimulationConfig:
    """The default preset cut at ``transactions``, over ``cards`` (and by default a tenth as many
    terminals, at least 10), with ``changes`` to any other field."""
    base = preset("default")
    population = replace(base.population, cards=cards, terminals=terminals or max(cards // 10, 10))
    return replace(
        base, seed=seed, days=None, max_transactions=transactions, population=population, **changes
    )


def simulated_stream(
    transactions: int, cards: int, seed: int = 1, terminals: int | None = None, **changes: object
) -> list[Transaction | Label]:
    """The stream of :func:`sized_config`, without its ground truth: what the service is sent."""
    config = sized_config(transactions, cards, seed, terminals, **changes)
    return [item.transaction if isinstance(item, SimulatedTransaction) else item for item in simulate(config)]
