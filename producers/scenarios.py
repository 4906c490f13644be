"""Fraud scenarios that fraud teams see, each one an episode that compromises cards for a while.

An episode adds fraudulent transactions to the stream (the owner's own spending goes on as usual),
usually several on the same card, so a compromised card stays compromised for a while and ranking
cards per day is meaningful. Amounts are drawn relative to the card's own habits and fraud often
happens where the card is known, so that no single feature separates a scenario from the honest
spending of the population (docs/models.md). Each scenario knows the mean number of fraudulent
transactions of an episode, so the simulator can start episodes at the rate that gives the
configured fraud rate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np

from producers.batch import LEGIT, Batch
from producers.drift_schedule import DriftSchedule
from producers.durations import Seconds
from producers.population import DAY, Population, check_ranges, check_shares


@dataclass(frozen=True)
class CardTestingConfig:
    """Checking stolen card numbers: a burst of small payments at one terminal (typically an online
    shop), then, on cards that worked, a few purchases above the card's habit anywhere."""

    weight: float = 0.3
    probes: tuple[int, int] = (3, 10)
    probe_amount: tuple[float, float] = (0.5, 5.0)
    probe_gap: Seconds = 90.0  # mean time between probes
    cashouts: tuple[int, int] = (0, 3)
    cashout_factor: tuple[float, float] = (1.5, 5.0)  # times the card's median amount
    cashout_within: Seconds = 2 * DAY

    def __post_init__(self) -> None:
        check_ranges(self, "probes", "probe_amount", "cashouts", "cashout_factor")
        if self.probes[0] < 1:
            raise ValueError("probes must be at least 1")


@dataclass(frozen=True)
class CompromisedTerminalConfig:
    """Skimming: a terminal copies the cards used on it during a window; each copied card is
    defrauded later, at other terminals, after a lag. And the terminal itself is used for fraud:
    for ``terminal_window``, payments there by many different cards are fraudulent, as in the
    compromised-terminal scenario of the public benchmark (Le Borgne et al., *Reproducible Machine
    Learning for Credit Card Fraud Detection*), which only the terminal's traffic and labels from
    every card reveal. A share ``regulars_share`` of those payments is by cards that use the
    terminal habitually, so that a card's first visit to the terminal does not give them away."""

    weight: float = 0.25
    window: Seconds = 7 * DAY
    victims: tuple[int, int] = (5, 15)
    lag: tuple[Seconds, Seconds] = (1 * DAY, 10 * DAY)
    transactions_per_victim: tuple[int, int] = (2, 5)
    spread: Seconds = 3 * DAY  # a victim's fraudulent transactions are spread over this long
    amount_factor: tuple[float, float] = (1.5, 4.0)  # times the card's median amount
    terminal_window: Seconds = 28 * DAY  # the benchmark's
    terminal_frauds: tuple[int, int] = (40, 120)  # payments at the terminal, by random or regular cards
    terminal_amount_factor: tuple[float, float] = (0.5, 1.5)  # ordinary amounts, times the card's median
    regulars_share: float = 0.5  # share of the terminal's fraudulent payments by its regular cards

    def __post_init__(self) -> None:
        check_ranges(
            self,
            "victims",
            "lag",
            "transactions_per_victim",
            "amount_factor",
            "terminal_frauds",
            "terminal_amount_factor",
        )
        check_shares(self, "regulars_share")


@dataclass(frozen=True)
class AccountTakeoverConfig:
    """A fraudster takes over a card account for a couple of days and spends above its usual
    amounts, partly at terminals the card never used, partly (a shop's account, a saved card) at
    ones it knows, while the owner keeps paying as before."""

    weight: float = 0.25
    transactions: tuple[int, int] = (3, 8)
    duration: Seconds = 2 * DAY
    amount_factor: tuple[float, float] = (1.5, 4.0)  # times the card's median amount
    known_terminal_share: float = 0.5  # share of the payments at terminals the card already uses

    def __post_init__(self) -> None:
        check_ranges(self, "transactions", "amount_factor")
        check_shares(self, "known_terminal_share")


@dataclass(frozen=True)
class HighAmountConfig:
    """A stolen card spent quickly on a few purchases above its habit at the card's usual terminals."""

    weight: float = 0.2
    transactions: tuple[int, int] = (1, 3)
    amount_factor: tuple[float, float] = (1.2, 5.0)  # times the card's median amount
    within: Seconds = 1 * DAY

    def __post_init__(self) -> None:
        check_ranges(self, "transactions", "amount_factor")


@dataclass(frozen=True)
class ScenariosConfig:
    """Every scenario's settings; ``weight`` is its expected share of fraudulent transactions
    (weights are normalised, 0 switches a scenario off)."""

    card_testing: CardTestingConfig = field(default_factory=CardTestingConfig)
    compromised_terminal: CompromisedTerminalConfig = field(default_factory=CompromisedTerminalConfig)
    account_takeover: AccountTakeoverConfig = field(default_factory=AccountTakeoverConfig)
    high_amount: HighAmountConfig = field(default_factory=HighAmountConfig)

    def __post_init__(self) -> None:
        for name in SCENARIO_NAMES:
            if getattr(self, name).weight < 0:
                raise ValueError(f"the weight of {name} must be at least 0")


ConfigT = TypeVar("ConfigT")


class Scenario(ABC, Generic[ConfigT]):
    """Makes the fraudulent transactions of the episodes of one scenario."""

    name: str

    def __init__(self, code: int, population: Population, config: ConfigT) -> None:
        self.code = code
        self.population = population
        self.config = config

    @abstractmethod
    def mean_transactions(self) -> float:
        """Expected fraudulent transactions per episode."""

    @abstractmethod
    def start(self, times: np.ndarray, rng: np.random.Generator) -> Batch:
        """Start one episode at each of ``times``; returns the transactions known so far."""

    def observe(self, legit: Batch, until: float, rng: np.random.Generator) -> Batch:
        """See the legitimate transactions before ``until`` (sorted by time); returns fraud they cause."""
        return Batch.empty()

    def _random_cards(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.population.config.cards, n)

    def _random_terminals(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.population.config.terminals, n)

    def _amounts(
        self, cards: np.ndarray, factor: tuple[float, float], rng: np.random.Generator
    ) -> np.ndarray:
        """Amounts of ``factor`` times each card's median amount: fraud measured against the card's habit."""
        return self.population.median_amount[cards] * rng.uniform(*factor, len(cards))

    def _episodes(
        self, starts: int, transactions: tuple[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """For ``starts`` episodes on random cards: each transaction's episode index and its card."""
        counts = _integers(transactions, starts, rng)
        episode = np.repeat(np.arange(starts), counts)
        return episode, self._random_cards(starts, rng)[episode]


def _regular_cards(population: Population) -> list[np.ndarray]:
    """For each terminal, the cards that use it habitually."""
    regular: list[list[int]] = [[] for _ in range(population.config.terminals)]
    for card in range(population.config.cards):
        for terminal in population.regulars(card).tolist():
            regular[terminal].append(card)
    return [np.array(cards, dtype=np.int64) for cards in regular]


def _integers(bounds: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(bounds[0], bounds[1] + 1, n)


def _mean(bounds: tuple[float, float]) -> float:
    return (bounds[0] + bounds[1]) / 2


class CardTesting(Scenario[CardTestingConfig]):
    name = "card_testing"

    def mean_transactions(self) -> float:
        return _mean(self.config.probes) + _mean(self.config.cashouts)

    def start(self, times: np.ndarray, rng: np.random.Generator) -> Batch:
        c = self.config
        cards = self._random_cards(len(times), rng)
        probes = _integers(c.probes, len(times), rng)
        episode = np.repeat(np.arange(len(times)), probes)
        gaps = rng.exponential(c.probe_gap, len(episode))
        before = np.cumsum(gaps) - gaps  # time of each probe after the first probe of all episodes
        first = np.cumsum(probes) - probes
        probe_times = times[episode] + before - before[first][episode]
        burst = Batch.of(
            probe_times,
            cards[episode],
            self._random_terminals(len(times), rng)[episode],
            rng.uniform(*c.probe_amount, len(episode)),
            self.code,
        )
        burst_end = times + np.add.reduceat(gaps, first)
        cashouts = _integers(c.cashouts, len(times), rng)
        episode = np.repeat(np.arange(len(times)), cashouts)
        cashout = Batch.of(
            burst_end[episode] + rng.uniform(0, c.cashout_within, len(episode)),
            cards[episode],
            self._random_terminals(len(episode), rng),
            self._amounts(cards[episode], c.cashout_factor, rng),
            self.code,
        )
        return Batch.concat([burst, cashout])


@dataclass
class _Skimmer:
    terminal: int
    start: float
    end: float
    quota: int
    victims: set[int] = field(default_factory=set)


class CompromisedTerminal(Scenario[CompromisedTerminalConfig]):
    name = "compromised_terminal"

    def __init__(self, code: int, population: Population, config: CompromisedTerminalConfig) -> None:
        super().__init__(code, population, config)
        traffic = population.terminal_traffic()
        # Skimmers go where the cards are: busier terminals are more likely to be compromised.
        self._terminal_odds = traffic / traffic.sum()
        self._regular_cards = _regular_cards(population)
        self._skimmers: list[_Skimmer] = []

    def mean_transactions(self) -> float:
        c = self.config
        return _mean(c.victims) * _mean(c.transactions_per_victim) + _mean(c.terminal_frauds)

    def start(self, times: np.ndarray, rng: np.random.Generator) -> Batch:
        terminals = rng.choice(len(self._terminal_odds), size=len(times), p=self._terminal_odds)
        quotas = _integers(self.config.victims, len(times), rng)
        for time, terminal, quota in zip(times.tolist(), terminals.tolist(), quotas.tolist(), strict=True):
            self._skimmers.append(_Skimmer(terminal, time, time + self.config.window, quota))
        return self._at_terminal(times, terminals, rng)

    def _at_terminal(self, times: np.ndarray, terminals: np.ndarray, rng: np.random.Generator) -> Batch:
        """The fraudulent payments at each compromised terminal during its ``terminal_window``."""
        c = self.config
        episode = np.repeat(np.arange(len(times)), _integers(c.terminal_frauds, len(times), rng))
        cards = self._random_cards(len(episode), rng)
        by_regular = rng.random(len(episode)) < c.regulars_share
        for i, terminal in enumerate(terminals.tolist()):
            regulars = self._regular_cards[terminal]
            rows = np.flatnonzero(by_regular & (episode == i))
            if len(regulars) and len(rows):
                cards[rows] = rng.choice(regulars, len(rows))
        return Batch.of(
            times[episode] + rng.uniform(0, c.terminal_window, len(episode)),
            cards,
            terminals[episode],
            self._amounts(cards, c.terminal_amount_factor, rng),
            self.code,
        )

    def observe(self, legit: Batch, until: float, rng: np.random.Generator) -> Batch:
        skimmed_cards: list[int] = []
        skimmed_at: list[float] = []
        for skimmer in self._skimmers:
            used = np.flatnonzero(
                (legit.terminals == skimmer.terminal)
                & (legit.times >= skimmer.start)
                & (legit.times < skimmer.end)
            )
            for card, time in zip(legit.cards[used].tolist(), legit.times[used].tolist(), strict=True):
                if len(skimmer.victims) == skimmer.quota:
                    break
                if card not in skimmer.victims:
                    skimmer.victims.add(card)
                    skimmed_cards.append(card)
                    skimmed_at.append(time)
        self._skimmers = [s for s in self._skimmers if len(s.victims) < s.quota and s.end > until]
        return self._defraud(np.array(skimmed_cards, dtype=np.int64), np.array(skimmed_at), rng)

    def _defraud(self, cards: np.ndarray, skimmed_at: np.ndarray, rng: np.random.Generator) -> Batch:
        c = self.config
        counts = _integers(c.transactions_per_victim, len(cards), rng)
        first_use = skimmed_at + rng.uniform(*c.lag, len(cards))
        victim = np.repeat(np.arange(len(cards)), counts)
        cards = cards[victim]
        return Batch.of(
            first_use[victim] + rng.uniform(0, c.spread, len(victim)),
            cards,
            self._random_terminals(len(victim), rng),
            self._amounts(cards, c.amount_factor, rng),
            self.code,
        )


class AccountTakeover(Scenario[AccountTakeoverConfig]):
    name = "account_takeover"

    def mean_transactions(self) -> float:
        return _mean(self.config.transactions)

    def start(self, times: np.ndarray, rng: np.random.Generator) -> Batch:
        c = self.config
        episode, cards = self._episodes(len(times), c.transactions, rng)
        known = rng.random(len(episode)) < c.known_terminal_share
        return Batch.of(
            times[episode] + rng.uniform(0, c.duration, len(episode)),
            cards,
            np.where(
                known,
                self.population.habitual_terminal(cards, rng),
                self._random_terminals(len(episode), rng),
            ),
            self._amounts(cards, c.amount_factor, rng),
            self.code,
        )


class HighAmount(Scenario[HighAmountConfig]):
    name = "high_amount"

    def mean_transactions(self) -> float:
        return _mean(self.config.transactions)

    def start(self, times: np.ndarray, rng: np.random.Generator) -> Batch:
        c = self.config
        episode, cards = self._episodes(len(times), c.transactions, rng)
        return Batch.of(
            times[episode] + rng.uniform(0, c.within, len(episode)),
            cards,
            self.population.habitual_terminal(cards, rng),
            self._amounts(cards, c.amount_factor, rng),
            self.code,
        )


_SCENARIO_TYPES: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (CardTesting, CompromisedTerminal, AccountTakeover, HighAmount)
}
SCENARIO_NAMES = tuple(_SCENARIO_TYPES)


def build_scenarios(config: ScenariosConfig, population: Population) -> list[Scenario]:
    """One scenario per field of ``config``; a scenario's code is its index in the list."""
    return [
        _SCENARIO_TYPES[name](code, population, getattr(config, name))
        for code, name in enumerate(SCENARIO_NAMES)
    ]


def relabel(batch: Batch, drift: DriftSchedule, rng: np.random.Generator) -> Batch:
    """``batch`` with the transactions the business counts as legitimate at their time made legitimate.

    The drift parameter ``relabel.<scenario>`` is the share of that scenario's transactions that
    count as legitimate (0 by default). The transactions stay the same; only their truth changes,
    which is concept drift in its purest form: P(fraud | transaction) changes, the data does not.
    """
    codes = batch.scenarios.copy()
    for code, name in enumerate(SCENARIO_NAMES):
        rows = np.flatnonzero(codes == code)
        if len(rows):
            share = drift.values(f"relabel.{name}", batch.times[rows])
            codes[rows[rng.random(len(rows)) < share]] = LEGIT
    return replace(batch, scenarios=codes)
