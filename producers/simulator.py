"""The simulated stream: transactions and their labels, merged in event-time order.

Days are generated as numpy columns (legitimate spending, then fraud episodes started that day, plus
fraud scheduled earlier for that day), sorted by time and turned into records one by one; labels wait
in a heap until their time comes. Memory holds one day of transactions, the labels not yet due and
the fraud already scheduled for later days.

The truth about each transaction (fraud or not, and which scenario) travels beside it in
:class:`SimulatedTransaction`, never inside the transaction's JSON.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from detector.engine.records import Label, Transaction
from producers.batch import LEGIT, Batch
from producers.config import SimulationConfig
from producers.labels import Labeller
from producers.ordering import LabelQueue
from producers.population import DAY, Population
from producers.scenarios import Scenario, build_scenarios, relabel


class SimulatedTransaction(NamedTuple):
    """A transaction with its ground truth: ``scenario`` is the fraud scenario, None if legitimate.

    A named tuple because the simulator makes millions of them.
    """

    transaction: Transaction
    scenario: str | None

    @property
    def is_fraud(self) -> bool:
        return self.scenario is not None

    @property
    def event_time(self) -> float:
        return self.transaction.event_time


Event = SimulatedTransaction | Label


@dataclass
class SimulationStats:
    """Counts of what the stream contains; final once the stream is exhausted."""

    transactions: int = 0
    frauds: Counter[str] = field(default_factory=Counter)  # fraudulent transactions by scenario
    labels: int = 0
    unlabelled: int = 0
    false_labels: int = 0


class Simulator:
    """Iterate once to get the stream; ``stats`` counts it. The same config gives the same stream."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        seeds = np.random.SeedSequence(config.seed).spawn(5)
        population_seed, legit_seed, fraud_seed, label_seed, relabel_seed = seeds
        # Separate random streams: changing the label settings, say, leaves the transactions alone.
        self._legit_rng = np.random.default_rng(legit_seed)
        self._fraud_rng = np.random.default_rng(fraud_seed)
        self._relabel_rng = np.random.default_rng(relabel_seed)
        self.population = Population(config.population, np.random.default_rng(population_seed))
        self.drift = config.drift_schedule()
        self.scenarios = build_scenarios(config.scenarios, self.population)
        self._labeller = Labeller(config.labels, np.random.default_rng(label_seed))
        self.stats = SimulationStats()
        self._started = False

    def __iter__(self) -> Iterator[Event]:
        if self._started:
            raise RuntimeError("a Simulator runs once: its random state has moved on; make a new one")
        self._started = True
        return self._events()

    def _events(self) -> Iterator[Event]:
        config = self.config
        start = config.start_time
        end = start + config.days * DAY if config.days is not None else float("inf")
        remaining = config.max_transactions if config.max_transactions is not None else -1
        scheduled: defaultdict[int, list[Batch]] = defaultdict(list)
        labels = LabelQueue()
        day = 0
        while start + day * DAY < end and remaining != 0:
            day_start = start + day * DAY
            legit = self.population.legit_day(day_start, self.drift, self._legit_rng).sorted_by_time()
            for fraud in self._fraud(day_start, legit):
                for fraud_day in np.unique((fraud.times - start) // DAY).astype(int).tolist():
                    scheduled[fraud_day].append(fraud.select((fraud.times - start) // DAY == fraud_day))
            batch = Batch.concat([legit, *scheduled.pop(day, [])]).sorted_by_time()
            batch = relabel(batch.select(batch.times < end), self.drift, self._relabel_rng)
            if remaining >= 0:
                batch = batch.select(slice(0, remaining))
                remaining -= len(batch)
            yield from self._records(batch, labels)
            day += 1
        yield from labels.drain()

    def _fraud(self, day_start: float, legit: Batch) -> list[Batch]:
        """The fraud that episodes starting this day, and the day's legitimate spending, cause."""
        rng = self._fraud_rng
        day_end = day_start + DAY
        odds = _odds(self.drift.maximum("fraud_rate", day_start, day_end))
        frequency = self.drift.maximum("legit.frequency_multiplier", day_start, day_end)
        batches = []
        for scenario in self.scenarios:
            if scenario.mean_transactions() > 0:
                # Episodes are a Poisson process whose rate follows the drift schedule: draw at an
                # upper bound of the rate over the day, keep each with probability rate / bound.
                bound = (
                    odds
                    * frequency
                    * self.population.expected_daily_transactions()
                    / scenario.mean_transactions()
                )
                times = np.sort(day_start + rng.uniform(0, DAY, rng.poisson(bound)))
                kept = rng.random(len(times)) * bound < self._episodes_per_day(scenario, times)
                batches.append(scenario.start(times[kept], rng))
            batches.append(scenario.observe(legit, day_end, rng))
        return batches

    def _episodes_per_day(self, scenario: Scenario, times: np.ndarray) -> np.ndarray:
        weights = {s.name: self.drift.values(f"scenarios.{s.name}.weight", times) for s in self.scenarios}
        total = sum(weights.values())
        share = np.divide(weights[scenario.name], total, out=np.zeros(len(times)), where=total > 0)
        legit_per_day = self.population.expected_daily_transactions() * self.drift.values(
            "legit.frequency_multiplier", times
        )
        return (
            _odds(self.drift.values("fraud_rate", times))
            * share
            * legit_per_day
            / scenario.mean_transactions()
        )

    def _records(self, batch: Batch, labels: LabelQueue) -> Iterator[Event]:
        plan = self._labeller.plan(batch)
        self._count(batch, plan.labelled, plan.is_fraud)
        card_ids, terminal_ids = self.population.card_ids, self.population.terminal_ids
        names = [s.name for s in self.scenarios]
        currency = self.config.currency
        sequence = self.stats.transactions - len(batch)
        for time, card, terminal, amount, code, labelled, is_fraud, delay in zip(
            batch.times.tolist(),
            batch.cards.tolist(),
            batch.terminals.tolist(),
            batch.amounts.tolist(),
            batch.scenarios.tolist(),
            plan.labelled.tolist(),
            plan.is_fraud.tolist(),
            plan.delays.tolist(),
            strict=True,
        ):
            if time > labels.next_time:
                yield from labels.before(time)
            sequence += 1
            transaction_id = f"X{sequence:010d}"
            customer_id = card_ids[card]
            yield SimulatedTransaction(
                Transaction(transaction_id, time, customer_id, terminal_ids[terminal], amount, currency),
                None if code == LEGIT else names[code],
            )
            if labelled:
                labels.push(Label(transaction_id, customer_id, is_fraud, time + delay))

    def _count(self, batch: Batch, labelled: np.ndarray, is_fraud: np.ndarray) -> None:
        stats = self.stats
        stats.transactions += len(batch)
        codes, counts = np.unique(batch.scenarios[batch.scenarios != LEGIT], return_counts=True)
        stats.frauds.update(
            {self.scenarios[c].name: n for c, n in zip(codes.tolist(), counts.tolist(), strict=True)}
        )
        stats.labels += int(labelled.sum())
        stats.unlabelled += len(batch) - int(labelled.sum())
        stats.false_labels += int((labelled & (is_fraud != (batch.scenarios != LEGIT))).sum())


def simulate(config: SimulationConfig) -> Iterator[Event]:
    """The stream of ``config``: :class:`SimulatedTransaction` and :class:`Label`, in event-time order."""
    return iter(Simulator(config))


def _odds(rate: np.ndarray | float) -> np.ndarray | float:
    """Fraudulent per legitimate transaction, for a share ``rate`` of all transactions."""
    return rate / (1 - rate)
