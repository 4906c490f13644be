"""Columns of generated transactions: the simulator builds whole days as numpy arrays, not objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEGIT = -1  # scenario code of a legitimate transaction


@dataclass(frozen=True)
class Batch:
    """Transactions as parallel arrays: event times (epoch seconds), card and terminal indices, amounts,
    and the index of the fraud scenario that made each one (``LEGIT`` for none)."""

    times: np.ndarray
    cards: np.ndarray
    terminals: np.ndarray
    amounts: np.ndarray
    scenarios: np.ndarray

    @classmethod
    def of(
        cls,
        times: np.ndarray,
        cards: np.ndarray,
        terminals: np.ndarray,
        amounts: np.ndarray,
        scenario: int = LEGIT,
    ) -> Batch:
        amounts = np.maximum(np.round(amounts, 2), 0.01)
        return cls(np.floor(times), cards, terminals, amounts, np.full(len(times), scenario, dtype=np.int16))

    @classmethod
    def empty(cls) -> Batch:
        return cls.of(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    def __len__(self) -> int:
        return len(self.times)

    def select(self, index: np.ndarray | slice) -> Batch:
        """The rows at ``index`` (an index array, a boolean mask or a slice), in that order."""
        return Batch(
            self.times[index],
            self.cards[index],
            self.terminals[index],
            self.amounts[index],
            self.scenarios[index],
        )

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        if not batches:
            return Batch.empty()
        return Batch(*(np.concatenate([getattr(b, name) for b in batches]) for name in _COLUMNS))

    def sorted_by_time(self) -> Batch:
        """Sorted by event time; rows with equal times keep their order, so sorting is deterministic."""
        return self.select(np.argsort(self.times, kind="stable"))


_COLUMNS = ("times", "cards", "terminals", "amounts", "scenarios")
