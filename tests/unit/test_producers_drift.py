"""Scheduled drift: parameters change when the schedule says, and the stream shows it."""

from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np
import pytest

from detector.engine.records import Label
from producers.config import SimulationConfig, drift, inflation, relabel, stationary
from producers.drift_schedule import DriftChange, DriftSchedule
from producers.population import DAY, PopulationConfig
from producers.scenarios import SCENARIO_NAMES
from producers.simulator import SimulatedTransaction, Simulator

ORIGIN = 1_700_000_000.0


def test_an_abrupt_change_applies_from_its_time_on() -> None:
    schedule = DriftSchedule({"x": 1.0}, [DriftChange(at="2d", param="x", to=3.0)], ORIGIN)
    times = ORIGIN + np.array([0, 2 * DAY - 1, 2 * DAY, 5 * DAY])
    assert schedule.values("x", times).tolist() == [1.0, 1.0, 3.0, 3.0]


def test_a_ramp_is_linear_and_changes_chain() -> None:
    changes = [
        DriftChange(at="1d", param="x", to=2.0, ramp=2 * DAY),
        DriftChange(at="2023-11-24T22:13:20Z", param="x", to=0.0),  # ORIGIN + 10 days, as a timestamp
    ]
    schedule = DriftSchedule({"x": 1.0, "y": 5.0}, changes, ORIGIN)
    times = ORIGIN + np.array([0, DAY, 2 * DAY, 3 * DAY, 10 * DAY - 1, 10 * DAY])
    assert schedule.values("x", times).tolist() == pytest.approx([1.0, 1.0, 1.5, 2.0, 2.0, 0.0])
    assert schedule.value("y", ORIGIN + 5 * DAY) == 5.0


def test_the_maximum_over_an_interval_sees_a_value_just_before_a_drop() -> None:
    changes = [
        DriftChange(at="1d", param="x", to=4.0, ramp=DAY),
        DriftChange(at="2d", param="x", to=0.0),
    ]
    schedule = DriftSchedule({"x": 0.0}, changes, ORIGIN)
    assert schedule.maximum("x", ORIGIN, ORIGIN + 3 * DAY) == pytest.approx(4.0)
    assert schedule.maximum("x", ORIGIN + 2 * DAY, ORIGIN + 3 * DAY) == 0.0


def test_drift_of_an_unknown_parameter_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'legit\.amount'"):
        SimulationConfig(drift=(DriftChange(at="1d", param="legit.amount", to=2.0),))


T = 8 * DAY
ABRUPT = SimulationConfig(
    seed=3,
    days=16,
    fraud_rate=0.02,
    population=PopulationConfig(cards=1500, terminals=150),
    scenarios=replace(
        SimulationConfig().scenarios,
        account_takeover=replace(SimulationConfig().scenarios.account_takeover, weight=0.0),
    ),
    drift=(
        DriftChange(at="8d", param="scenarios.card_testing.weight", to=0.0),
        DriftChange(at="8d", param="scenarios.account_takeover.weight", to=0.5),
        DriftChange(at="8d", param="legit.amount_multiplier", to=1.5),
        DriftChange(at="8d", param="legit.new_terminal_share", to=0.3),
    ),
)


@pytest.fixture(scope="module")
def abrupt() -> tuple[Simulator, list[SimulatedTransaction]]:
    simulator = Simulator(ABRUPT)
    return simulator, [e for e in simulator if isinstance(e, SimulatedTransaction)]


def test_a_pattern_starts_at_its_time(abrupt: tuple[Simulator, list[SimulatedTransaction]]) -> None:
    _, txs = abrupt
    change = ABRUPT.start_time + T
    takeovers = [e for e in txs if e.scenario == "account_takeover"]
    assert takeovers
    assert min(e.event_time for e in takeovers) >= change


def test_a_pattern_stops_at_its_time(abrupt: tuple[Simulator, list[SimulatedTransaction]]) -> None:
    _, txs = abrupt
    change = ABRUPT.start_time + T
    testing = [e.event_time for e in txs if e.scenario == "card_testing"]
    assert any(time < change for time in testing)
    # episodes started before the change finish: their cash-outs come at most 2 days after the burst
    assert all(time < change + 2 * DAY + 3600 for time in testing)


def test_amount_inflation_shows_from_its_time_on(
    abrupt: tuple[Simulator, list[SimulatedTransaction]],
) -> None:
    simulator, txs = abrupt
    change = ABRUPT.start_time + T
    ratios = [
        (e.event_time >= change, e.transaction.amount / simulator.population.median_amount[_card(e)])
        for e in txs
        if not e.is_fraud
    ]
    before = statistics.median(r for after, r in ratios if not after)
    after = statistics.median(r for after, r in ratios if after)
    assert before == pytest.approx(1.0, rel=0.03)
    assert after == pytest.approx(1.5, rel=0.03)


def test_cards_use_new_terminals_from_its_time_on(
    abrupt: tuple[Simulator, list[SimulatedTransaction]],
) -> None:
    simulator, txs = abrupt
    change = ABRUPT.start_time + T
    habitual = simulator.population.habitual
    unusual: dict[bool, list[bool]] = {False: [], True: []}
    for e in txs:
        if not e.is_fraud:
            unusual[e.event_time >= change].append(_terminal(e) not in habitual[_card(e)])
    # a random terminal is sometimes a habitual one, hence slightly below the configured share
    assert statistics.mean(unusual[False]) == pytest.approx(0.02, abs=0.01)
    assert statistics.mean(unusual[True]) == pytest.approx(0.3 * (1 - 7.5 / 150), abs=0.02)


def test_a_ramp_changes_amounts_gradually() -> None:
    config = replace(
        SimulationConfig(),
        seed=4,
        days=12,
        population=PopulationConfig(cards=1000, terminals=100),
        drift=(DriftChange(at="4d", param="legit.amount_multiplier", to=2.0, ramp=4 * DAY),),
    )
    simulator = Simulator(config)
    by_day: dict[int, list[float]] = {}
    for e in simulator:
        if isinstance(e, SimulatedTransaction) and not e.is_fraud:
            day = int((e.event_time - config.start_time) // DAY)
            by_day.setdefault(day, []).append(
                e.transaction.amount / simulator.population.median_amount[_card(e)]
            )
    medians = {day: statistics.median(ratios) for day, ratios in by_day.items()}
    assert medians[2] == pytest.approx(1.0, rel=0.05)
    assert medians[5] == pytest.approx(1.375, rel=0.05)  # the ramp is 3/8 of the way in the middle of day 5
    assert medians[10] == pytest.approx(2.0, rel=0.05)


def test_the_drift_preset_switches_from_card_testing_to_account_takeover_on_day_30() -> None:
    schedule = drift().drift_schedule()
    start = drift().start_time
    assert schedule.value("scenarios.account_takeover.weight", start + 30 * DAY - 1) == 0.0
    assert schedule.value("scenarios.account_takeover.weight", start + 30 * DAY) > 0.0
    assert schedule.value("scenarios.card_testing.weight", start + 30 * DAY - 1) > 0.0
    assert schedule.value("scenarios.card_testing.weight", start + 30 * DAY) == 0.0


def _card(event: SimulatedTransaction) -> int:
    return int(event.transaction.customer_id[1:])


def _terminal(event: SimulatedTransaction) -> int:
    return int(event.transaction.terminal_id[1:])


def _small(config: SimulationConfig, days: float) -> SimulationConfig:
    return replace(config, seed=5, days=days, population=PopulationConfig(cards=1500, terminals=150))


def test_relabelling_changes_what_counts_as_fraud_not_the_transactions() -> None:
    relabelled = _small(relabel(), 40)  # card testing episodes are rare: days enough to see some
    events = list(Simulator(relabelled))
    unchanged = list(Simulator(replace(relabelled, drift=())))
    change = relabelled.start_time + 30 * DAY
    txs = [e for e in events if isinstance(e, SimulatedTransaction)]
    before = {e.scenario for e in txs if e.event_time < change}
    after = {e.scenario for e in txs if e.event_time >= change + 2 * DAY}
    assert "card_testing" not in before and "high_amount" in before
    assert "card_testing" in after and "high_amount" not in after
    original = [e for e in unchanged if isinstance(e, SimulatedTransaction)]
    assert [e.transaction for e in txs] == [e.transaction for e in original]
    truth_changed = {
        e.transaction.transaction_id: e.is_fraud
        for e, o in zip(txs, original, strict=True)
        if e.is_fraud != o.is_fraud
    }
    assert truth_changed
    labels = {e.transaction_id: e.is_fraud for e in events if isinstance(e, Label)}
    flipped = [labels[t] == fraud for t, fraud in truth_changed.items() if t in labels]
    assert statistics.mean(flipped) > 0.9  # labels follow the new truth (up to false labels)


def test_inflation_moves_legitimate_spending_only() -> None:
    schedule = inflation().drift_schedule()
    start = inflation().start_time
    assert schedule.value("legit.amount_multiplier", start + 40 * DAY) == pytest.approx(1.3)
    assert schedule.value("legit.new_terminal_share", start + 40 * DAY) == pytest.approx(0.15)
    weights = [f"scenarios.{name}.weight" for name in SCENARIO_NAMES]
    for moment in (start, start + 30 * DAY, start + 59 * DAY):
        assert [schedule.value(w, moment) for w in weights] == [schedule.value(w, start) for w in weights]


def test_the_stationary_preset_has_no_drift() -> None:
    assert stationary().drift == () and stationary().days == 60
