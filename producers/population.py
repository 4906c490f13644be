"""Cards and terminals, and the legitimate transactions the cards make.

Each card has its own habits: how often it pays (Poisson per day), how much (log-normal around its
own median), when (normally around its own peak hour), and where (mostly the few terminals nearest
to its holder, the nearest most often; sometimes a terminal it never used). Fraud shows up against
these habits, so the habits have to differ between cards. Honest spending also breaks its habits
now and then (a large purchase, a small one, a second payment at the same shop minutes later), as
fraud does, so that no single deviation gives fraud away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from producers.batch import Batch
from producers.drift_schedule import DriftSchedule
from producers.durations import Seconds

DAY = 86400.0
_DISTANCE_CHUNK = 2048  # cards per block when finding nearest terminals, to bound memory


def check_ranges(config: object, *names: str) -> None:
    """Raise if a ``(low, high)`` field of ``config`` is not a range of non-negative numbers."""
    for name in names:
        low, high = getattr(config, name)
        if not 0 <= low <= high:
            raise ValueError(f"{name} must be a range 0 <= low <= high, got {(low, high)}")


def check_shares(config: object, *names: str) -> None:
    """Raise if a share field of ``config`` is not between 0 and 1."""
    for name in names:
        if not 0 <= getattr(config, name) <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {getattr(config, name)}")


@dataclass(frozen=True)
class PopulationConfig:
    """Who pays where. Ranges are (low, high); each card draws its own value from them."""

    cards: int = 10_000
    terminals: int = 1_000
    transactions_per_day: tuple[float, float] = (0.5, 4.0)
    median_amount: tuple[float, float] = (8.0, 150.0)  # drawn log-uniformly
    amount_spread: tuple[float, float] = (0.3, 0.9)  # standard deviation of log(amount)
    habitual_terminals: tuple[int, int] = (3, 12)
    habit_skew: float = 2.0  # above 1, a card uses its nearest terminals more than its farther ones
    peak_hour: tuple[float, float] = (8.0, 20.0)
    hour_spread: tuple[float, float] = (1.0, 3.5)  # standard deviation around the peak hour, hours
    large_share: float = 0.02  # share of payments far above the card's habit
    large_factor: tuple[float, float] = (2.0, 6.0)  # their amounts, times the card's median amount
    small_share: float = 0.04  # share of payments of a few units, whatever the card's habit
    small_amount: tuple[float, float] = (0.5, 6.0)
    repeat_share: float = 0.03  # share of payments followed by another at the same terminal
    repeat_gap: Seconds = 600.0  # mean time to that second payment

    def __post_init__(self) -> None:
        if self.cards < 1 or self.terminals < 1:
            raise ValueError("cards and terminals must be at least 1")
        check_ranges(
            self,
            "transactions_per_day",
            "median_amount",
            "amount_spread",
            "hour_spread",
            "large_factor",
            "small_amount",
        )
        check_shares(self, "large_share", "small_share", "repeat_share")
        if self.large_share + self.small_share > 1:
            raise ValueError("large_share and small_share must add up to at most 1")
        if self.repeat_gap < 0:
            raise ValueError("repeat_gap must be at least 0")
        if self.median_amount[0] <= 0:
            raise ValueError("median_amount must be above 0")
        if not 1 <= self.habitual_terminals[0] <= self.habitual_terminals[1] <= self.terminals:
            raise ValueError("habitual_terminals must be a range between 1 and the number of terminals")
        if self.habit_skew <= 0:
            raise ValueError("habit_skew must be above 0")


@dataclass(frozen=True)
class LegitBehaviour:
    """How legitimate spending drifts; these are the ``legit.*`` parameters of the drift schedule."""

    amount_multiplier: float = 1.0  # e.g. 1.2 after 20% inflation
    frequency_multiplier: float = 1.0
    new_terminal_share: float = 0.02  # share of payments at a terminal picked at random

    def __post_init__(self) -> None:
        if self.amount_multiplier <= 0 or self.frequency_multiplier < 0:
            raise ValueError("amount_multiplier must be above 0 and frequency_multiplier at least 0")
        check_shares(self, "new_terminal_share")


class Population:
    """The cards and terminals of one simulation, drawn once from ``config``."""

    def __init__(self, config: PopulationConfig, rng: np.random.Generator) -> None:
        self.config = config
        n = config.cards
        self.card_ids = [f"C{i:08d}" for i in range(n)]
        self.terminal_ids = [f"T{i:06d}" for i in range(config.terminals)]
        self.daily_rate = rng.uniform(*config.transactions_per_day, n)
        low, high = np.log(config.median_amount)
        self.median_amount = np.exp(rng.uniform(low, high, n))
        self.amount_spread = rng.uniform(*config.amount_spread, n)
        self.peak_hour = rng.uniform(*config.peak_hour, n)
        self.hour_spread = rng.uniform(*config.hour_spread, n)
        self.habit_count = rng.integers(config.habitual_terminals[0], config.habitual_terminals[1] + 1, n)
        self.habitual = _nearest_terminals(
            rng.random((n, 2)), rng.random((config.terminals, 2)), config.habitual_terminals[1]
        )

    def expected_daily_transactions(self) -> float:
        """Legitimate transactions per day at a frequency multiplier of 1, repeats included."""
        return float(self.daily_rate.sum()) * (1 + self.config.repeat_share)

    def regulars(self, card: int) -> np.ndarray:
        """The terminals ``card`` habitually uses, nearest first."""
        return self.habitual[card, : self.habit_count[card]]

    def terminal_traffic(self) -> np.ndarray:
        """Expected habitual visits per day at each terminal."""
        slots = np.arange(self.habitual.shape[1])
        count = self.habit_count[:, None]
        # P(slot j) for a slot drawn as floor(count * u ** skew), u uniform on [0, 1)
        inverse = 1.0 / self.config.habit_skew
        share = np.minimum((slots + 1) / count, 1.0) ** inverse - np.minimum(slots / count, 1.0) ** inverse
        traffic = np.zeros(self.config.terminals)
        np.add.at(traffic, self.habitual, share * self.daily_rate[:, None])
        return traffic

    def habitual_terminal(self, cards: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A terminal each card habitually uses, the nearest ones more often."""
        slots = np.floor(self.habit_count[cards] * rng.random(len(cards)) ** self.config.habit_skew)
        return self.habitual[cards, slots.astype(np.int64)]

    def legit_day(self, day_start: float, drift: DriftSchedule, rng: np.random.Generator) -> Batch:
        """The legitimate transactions of the day starting at ``day_start``, not sorted by time."""
        frequency = "legit.frequency_multiplier"
        peak = drift.maximum(frequency, day_start, day_start + DAY)
        if peak <= 0:
            return Batch.empty()
        cards = np.repeat(np.arange(self.config.cards), rng.poisson(self.daily_rate * peak))
        hours = (self.peak_hour[cards] + self.hour_spread[cards] * rng.standard_normal(len(cards))) % 24
        times = day_start + np.floor(hours * 3600)
        # Thinning: a frequency that changes during the day changes it at the right time.
        kept = rng.random(len(cards)) * peak < drift.values(frequency, times)
        cards, times = cards[kept], times[kept]
        random_terminal = rng.random(len(cards)) < drift.values("legit.new_terminal_share", times)
        terminals = np.where(
            random_terminal,
            rng.integers(0, self.config.terminals, len(cards)),
            self.habitual_terminal(cards, rng),
        )
        cards, times, terminals = self._with_repeats(cards, times, terminals, day_start + DAY, rng)
        return Batch.of(times, cards, terminals, self._amounts(cards, times, drift, rng))

    def _with_repeats(
        self,
        cards: np.ndarray,
        times: np.ndarray,
        terminals: np.ndarray,
        day_end: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The payments and, after some of them, a second one at the same terminal (within the day)."""
        first = np.flatnonzero(rng.random(len(cards)) < self.config.repeat_share)
        later = times[first] + np.floor(rng.exponential(self.config.repeat_gap, len(first)))
        first, later = first[later < day_end], later[later < day_end]
        return (
            np.concatenate([cards, cards[first]]),
            np.concatenate([times, later]),
            np.concatenate([terminals, terminals[first]]),
        )

    def _amounts(
        self, cards: np.ndarray, times: np.ndarray, drift: DriftSchedule, rng: np.random.Generator
    ) -> np.ndarray:
        """Amounts around each card's median, but a few large ones and a few small ones."""
        c = self.config
        habit = self.median_amount[cards] * drift.values("legit.amount_multiplier", times)
        amounts = habit * np.exp(self.amount_spread[cards] * rng.standard_normal(len(cards)))
        kind = rng.random(len(cards))
        large = kind < c.large_share
        small = (kind >= c.large_share) & (kind < c.large_share + c.small_share)
        amounts[large] = habit[large] * rng.uniform(*c.large_factor, int(large.sum()))
        amounts[small] = rng.uniform(*c.small_amount, int(small.sum()))
        return amounts


def _nearest_terminals(cards: np.ndarray, terminals: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` terminals nearest to each card, nearest first."""
    nearest = np.empty((len(cards), k), dtype=np.int64)
    for start in range(0, len(cards), _DISTANCE_CHUNK):
        block = cards[start : start + _DISTANCE_CHUNK]
        distances = ((block[:, None, :] - terminals[None, :, :]) ** 2).sum(axis=2)
        candidates = np.argpartition(distances, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(distances, candidates, axis=1), axis=1, kind="stable")
        nearest[start : start + len(block)] = np.take_along_axis(candidates, order, axis=1)
    return nearest
