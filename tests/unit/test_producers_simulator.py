"""The simulated stream: determinism, fraud rate and mix, labels, and event-time order."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from detector.engine.records import Label, decode_transaction
from producers.batch import Batch
from producers.config import SimulationConfig
from producers.labels import DelayDistribution, LabelConfig
from producers.population import DAY, Population, PopulationConfig
from producers.scenarios import (
    AccountTakeoverConfig,
    CardTestingConfig,
    CompromisedTerminal,
    CompromisedTerminalConfig,
    HighAmountConfig,
    ScenariosConfig,
)
from producers.simulator import SimulatedTransaction, Simulator, simulate

SMALL = SimulationConfig(
    seed=1, days=6, fraud_rate=0.02, population=PopulationConfig(cards=300, terminals=40)
)


def transactions(events: list) -> list[SimulatedTransaction]:
    return [e for e in events if isinstance(e, SimulatedTransaction)]


def labels(events: list) -> list[Label]:
    return [e for e in events if isinstance(e, Label)]


@pytest.fixture(scope="module")
def small_stream() -> list:
    return list(simulate(SMALL))


def test_the_same_seed_gives_the_same_stream(small_stream: list) -> None:
    assert list(simulate(SMALL)) == small_stream


def test_another_seed_gives_another_stream(small_stream: list) -> None:
    other = list(simulate(replace(SMALL, seed=2)))
    assert [e.transaction for e in transactions(other)][:100] != [
        e.transaction for e in transactions(small_stream)
    ][:100]


def test_label_settings_leave_the_transactions_alone(small_stream: list) -> None:
    relabelled = replace(SMALL, labels=replace(SMALL.labels, unlabelled_share=0.5))
    assert transactions(list(simulate(relabelled))) == transactions(small_stream)


def test_transactions_are_in_time_order_and_labels_follow_every_transaction_up_to_their_time(
    small_stream: list,
) -> None:
    assert len(labels(small_stream)) > 1000
    times = [e.event_time for e in transactions(small_stream)]
    assert times == sorted(times)
    label_times = [e.event_time for e in labels(small_stream)]
    assert label_times == sorted(label_times)
    earliest_later_transaction = float("inf")
    for event in reversed(small_stream):
        if isinstance(event, Label):
            assert event.event_time < earliest_later_transaction
        else:
            earliest_later_transaction = min(earliest_later_transaction, event.event_time)


def test_labels_never_precede_their_transaction(small_stream: list) -> None:
    seen: dict[str, float] = {}
    for event in small_stream:
        if isinstance(event, Label):
            assert event.event_time >= seen[event.transaction_id]
        else:
            seen[event.transaction.transaction_id] = event.event_time


def test_the_truth_stays_out_of_the_transaction_json(small_stream: list) -> None:
    frauds = [e for e in transactions(small_stream) if e.is_fraud]
    assert frauds
    for event in frauds:
        body = event.transaction.to_json()
        assert event.scenario is not None
        assert b"fraud" not in body and event.scenario.encode() not in body
        assert decode_transaction(body) == event.transaction


def test_events_start_on_the_start_date_and_ids_are_unique(small_stream: list) -> None:
    txs = transactions(small_stream)
    assert txs[0].transaction.timestamp.startswith("2026-01-01T")
    assert max(e.event_time for e in txs) < SMALL.start_time + 6 * DAY
    assert len({e.transaction.transaction_id for e in txs}) == len(txs)


def test_max_transactions_stops_the_stream_and_every_label_still_comes() -> None:
    simulator = Simulator(replace(SMALL, days=None, max_transactions=2500))
    events = list(simulator)
    assert len(transactions(events)) == 2500
    assert len(labels(events)) == simulator.stats.labels == 2500 - simulator.stats.unlabelled


# A longer run with small episodes (many of them, for tight statistics) and short lags, so the
# fraud of multi-day scenarios reaches its steady rate after a few days.
STATS_CONFIG = SimulationConfig(
    seed=7,
    days=40,
    fraud_rate=0.02,
    population=PopulationConfig(cards=2000, terminals=200),
    scenarios=ScenariosConfig(
        card_testing=CardTestingConfig(weight=0.4, probes=(2, 4), cashouts=(0, 1)),
        compromised_terminal=CompromisedTerminalConfig(
            weight=0.3,
            window=2 * DAY,
            victims=(2, 4),
            lag=(DAY, 2 * DAY),
            transactions_per_victim=(1, 2),
            spread=DAY,
            terminal_window=2 * DAY,
            terminal_frauds=(2, 4),
        ),
        account_takeover=AccountTakeoverConfig(weight=0.2, transactions=(2, 4), duration=DAY),
        high_amount=HighAmountConfig(weight=0.1),
    ),
    labels=LabelConfig(
        fraud_delay=DelayDistribution(median=10 * DAY, sigma=0.6, low=2 * DAY, high=30 * DAY),
        legit_delay=DelayDistribution(median=3 * DAY),
        unlabelled_share=0.1,
        missed_fraud_share=0.1,
        false_fraud_share=0.02,
    ),
)
STEADY_FROM = 8 * DAY


@pytest.fixture(scope="module")
def stats_run() -> tuple[Simulator, list]:
    simulator = Simulator(STATS_CONFIG)
    return simulator, list(simulator)


def test_fraud_rate_and_scenario_mix_match_the_config(stats_run: tuple[Simulator, list]) -> None:
    _, events = stats_run
    steady = [e for e in transactions(events) if e.event_time >= STATS_CONFIG.start_time + STEADY_FROM]
    frauds = Counter(e.scenario for e in steady if e.is_fraud)
    total = sum(frauds.values())
    assert total / len(steady) == pytest.approx(0.02, rel=0.1)
    weights = {"card_testing": 0.4, "compromised_terminal": 0.3, "account_takeover": 0.2, "high_amount": 0.1}
    for scenario, weight in weights.items():
        assert frauds[scenario] / total == pytest.approx(weight, abs=0.04), scenario


def test_the_default_config_keeps_fraud_well_under_one_percent() -> None:
    simulator = Simulator(
        replace(SimulationConfig(), days=10, population=PopulationConfig(cards=3000, terminals=300))
    )
    frauds = sum(1 for e in simulator if isinstance(e, SimulatedTransaction) and e.is_fraud)
    assert 0.001 < frauds / simulator.stats.transactions < 0.006


def test_a_compromised_card_gets_several_fraudulent_transactions(stats_run: tuple[Simulator, list]) -> None:
    _, events = stats_run
    per_card = Counter(e.transaction.customer_id for e in transactions(events) if e.is_fraud)
    assert statistics.mean(per_card.values()) >= 2


def test_label_shares_and_delays_match_the_config(stats_run: tuple[Simulator, list]) -> None:
    simulator, events = stats_run
    truth = {e.transaction.transaction_id: e for e in transactions(events)}
    given = labels(events)
    assert 1 - len(given) / len(truth) == pytest.approx(0.1, abs=0.005)
    false = [label for label in given if label.is_fraud != truth[label.transaction_id].is_fraud]
    for is_fraud, share in ((True, 0.1), (False, 0.02)):
        of_class = [label for label in given if truth[label.transaction_id].is_fraud == is_fraud]
        wrong = [label for label in of_class if label.is_fraud != is_fraud]
        assert len(wrong) / len(of_class) == pytest.approx(share, rel=0.15), is_fraud
    assert simulator.stats.false_labels == len(false)
    assert simulator.stats.unlabelled == len(truth) - len(given)
    fraud_delays = []
    for label in given:
        delay = label.event_time - truth[label.transaction_id].event_time
        if label.is_fraud:
            fraud_delays.append(delay)
            assert 2 * DAY <= delay <= 30 * DAY
        else:
            assert delay == 3 * DAY
    assert statistics.median(fraud_delays) == pytest.approx(10 * DAY, rel=0.1)


def test_card_testing_is_a_burst_of_small_amounts_at_one_terminal(stats_run: tuple[Simulator, list]) -> None:
    _, events = stats_run
    probes: dict[str, list] = {}
    for event in transactions(events):
        if event.scenario == "card_testing" and event.transaction.amount <= 5.0:
            probes.setdefault(event.transaction.customer_id, []).append(event.transaction)
    # A card tested twice (on other days) has two bursts: split a card's probes at gaps of hours.
    bursts: list[list] = []
    for txs in probes.values():
        bursts.append([txs[0]])
        for before, tx in pairwise(txs):
            if tx.event_time - before.event_time > 6 * 3600:
                bursts.append([])
            bursts[-1].append(tx)
    bursts = [burst for burst in bursts if len(burst) >= 2]
    assert len(bursts) > 50
    tight = [txs for txs in bursts if txs[-1].event_time - txs[0].event_time < 3600]
    assert len(tight) / len(bursts) > 0.9
    assert all(len({tx.terminal_id for tx in txs}) <= 2 for txs in tight)


def test_account_takeover_spends_above_the_cards_habit_half_at_terminals_it_knows(
    stats_run: tuple[Simulator, list],
) -> None:
    simulator, events = stats_run
    population = simulator.population
    takeovers = [e.transaction for e in transactions(events) if e.scenario == "account_takeover"]
    assert len(takeovers) > 100
    card = np.array([int(tx.customer_id[1:]) for tx in takeovers])
    terminal = np.array([int(tx.terminal_id[1:]) for tx in takeovers])
    known = np.array([t in population.regulars(c) for c, t in zip(card, terminal, strict=True)])
    assert 0.4 < known.mean() < 0.65  # half at known terminals, a few random ones known by chance
    ratio = np.array([tx.amount for tx in takeovers]) / population.median_amount[card]
    assert ratio.min() >= 1.5 - 0.01 and ratio.max() <= 4.0 + 0.01
    assert np.median(ratio) == pytest.approx(2.75, abs=0.3)


def test_high_amount_fraud_is_above_the_cards_habit_at_usual_terminals(
    stats_run: tuple[Simulator, list],
) -> None:
    simulator, events = stats_run
    population = simulator.population
    frauds = [e.transaction for e in transactions(events) if e.scenario == "high_amount"]
    assert frauds
    for tx in frauds:
        card = int(tx.customer_id[1:])
        assert 1.2 - 0.01 <= tx.amount / population.median_amount[card] <= 5.0 + 0.01
        assert int(tx.terminal_id[1:]) in population.regulars(card)


def test_a_skimmer_defrauds_the_first_cards_used_on_its_terminal_during_its_window_after_a_lag() -> None:
    population = Population(PopulationConfig(cards=20, terminals=1, habitual_terminals=(1, 1)), rng(0))
    config = CompromisedTerminalConfig(
        window=DAY,
        victims=(3, 3),
        lag=(DAY, 2 * DAY),
        transactions_per_victim=(2, 2),
        spread=DAY,
        terminal_frauds=(0, 0),
    )
    skimmer = CompromisedTerminal(code=1, population=population, config=config)
    start = 1_000_000.0
    assert len(skimmer.start(np.array([start]), rng(1))) == 0
    # card 9 pays before the window, 4 twice, then 7, 2 (the third victim) and 5 (over the quota)
    cards = np.array([9, 4, 4, 7, 2, 5])
    times = start + np.array([-10.0, 10, 20, 30, 40, 50])
    legit = Batch.of(times, cards, np.zeros(6, dtype=np.int64), np.full(6, 10.0))
    fraud = skimmer.observe(legit, start + DAY, rng(2))
    assert sorted(fraud.cards.tolist()) == [2, 2, 4, 4, 7, 7]
    skimmed_at = dict(zip(cards.tolist()[::-1], times.tolist()[::-1], strict=True))
    for card, time in zip(fraud.cards.tolist(), fraud.times.tolist(), strict=True):
        assert skimmed_at[card] + DAY <= time <= skimmed_at[card] + 3 * DAY
    assert set(fraud.scenarios.tolist()) == {1}
    # the quota is reached: the skimmer is done
    assert len(skimmer.observe(legit, start + DAY, rng(3))) == 0


def test_a_compromised_terminal_is_used_for_fraud_by_many_cards_during_its_window() -> None:
    population = Population(PopulationConfig(cards=500, terminals=50), rng(0))
    config = CompromisedTerminalConfig(terminal_window=28 * DAY, terminal_frauds=(60, 60))
    scenario = CompromisedTerminal(code=1, population=population, config=config)
    start = 1_000_000.0
    fraud = scenario.start(np.array([start]), rng(1))
    assert len(fraud) == 60 and len(set(fraud.terminals.tolist())) == 1
    assert len(set(fraud.cards.tolist())) > 40
    assert start <= fraud.times.min() and fraud.times.max() < start + 28 * DAY
    assert set(fraud.scenarios.tolist()) == {1}


@pytest.mark.parametrize(("share", "low", "high"), [(0.5, 0.45, 0.7), (0.0, 0.0, 0.3)])
def test_a_share_of_a_compromised_terminals_fraud_is_by_cards_that_use_it_habitually(
    share: float, low: float, high: float
) -> None:
    population = Population(PopulationConfig(cards=500, terminals=50), rng(0))
    config = CompromisedTerminalConfig(terminal_frauds=(400, 400), regulars_share=share)
    fraud = CompromisedTerminal(code=1, population=population, config=config).start(np.array([0.0]), rng(1))
    terminal = int(fraud.terminals[0])
    by_regulars = [terminal in population.regulars(card) for card in fraud.cards.tolist()]
    assert low < np.mean(by_regulars) < high  # random cards use it habitually now and then too


def test_legitimate_spending_is_sometimes_large_small_or_repeated_minutes_later() -> None:
    habits = PopulationConfig(cards=2000, terminals=100, transactions_per_day=(1, 1), amount_spread=(0, 0))
    drift = SimulationConfig().drift_schedule()
    days = {}
    for repeat_share in (0.0, 0.3):
        population = Population(replace(habits, repeat_share=repeat_share), rng(0))
        days[repeat_share] = Batch.concat(
            [population.legit_day(day * DAY, drift, rng(day)).sorted_by_time() for day in range(5)]
        )
        assert len(days[repeat_share]) / 5 == pytest.approx(
            population.expected_daily_transactions(), rel=0.03
        )
    day = days[0.0]
    ratio = day.amounts / population.median_amount[day.cards]
    small, large = day.amounts <= 6.0, ratio >= 2.0 - 0.01  # every median is at least 8
    assert small.mean() == pytest.approx(0.04, abs=0.01) and large.mean() == pytest.approx(0.02, abs=0.006)
    assert ratio[large].max() <= 6.0 + 0.01
    assert ratio[~small & ~large] == pytest.approx(1.0, abs=0.01)  # no spread: the rest is the median
    close = {share: _repeats_within(batch, 1800) for share, batch in days.items()}
    # 30% of payments followed by another within 30 minutes (mean 10) 95% of the time
    assert (close[0.3] - close[0.0]) / len(days[0.0]) == pytest.approx(0.3 * 0.95, abs=0.03)


def _repeats_within(batch: Batch, seconds: float) -> int:
    """Payments that follow one by the same card at the same terminal within ``seconds``."""
    last: dict[tuple[int, int], float] = {}
    count = 0
    for time, card, terminal in zip(
        batch.times.tolist(), batch.cards.tolist(), batch.terminals.tolist(), strict=True
    ):
        count += time - last.get((card, terminal), -np.inf) <= seconds
        last[card, terminal] = time
    return count


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_a_simulator_runs_once() -> None:
    simulator = Simulator(replace(SMALL, days=1))
    list(simulator)
    with pytest.raises(RuntimeError, match="runs once"):
        iter(simulator)
