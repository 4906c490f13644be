"""Benchmark: does drift handling pay? Each kind of drift, with drift handling on and off.

The engine runs in memory on simulated streams, one per kind of drift (a simulator preset each):

* ``stationary``: nothing changes (``stationary``);
* ``pattern``: card testing stops and account takeover starts on day 30 (``drift``);
* ``relabel``: on day 30 the business re-labels two segments: card testing, legitimate until then,
  becomes fraud and high-amount purchases at usual terminals become legitimate (``relabel``);
* ``demo``: the demo's stream (the ``drift`` preset with 500 cards, 1% fraud and labels within
  hours), at its own size whatever ``--cards`` says;
* ``inflation``: legitimate spending inflates and moves to new terminals from day 20 to 40, which
  is no concept drift for a model of card-relative features (``inflation``).

Quality is prequential (every transaction is scored before its label is known) over a fixed window:
the 14 days from the first label of a transaction made after the change (on the stationary stream,
the last 14 days). "delay" is the event time, in days, from that first post-change label to the
first drift detection; "early" counts detections and swaps before that label, which are false.

The ``oracle_*`` strategies bound what any detector could gain: with drift handling off, they
recover at a moment chosen with hindsight (``--oracle-days`` after the first post-change label),
either replacing the champion by a model warm-started on the latest labels (``oracle_reset``) or
averaging the two from then on (``oracle_ensemble``). If no oracle beats "off", no detector
feeding that recovery can. ``--missed-fraud-share`` and ``--false-fraud-share`` override the
streams' label noise.

    python bench/drift_bench.py                       # 2,000 cards, 60 days: minutes
    python bench/drift_bench.py --kinds stationary --stationary-cards 8000   # >1M transactions
    python bench/drift_bench.py --kinds relabel pattern --strategies off on oracle_reset oracle_ensemble
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import Outcome, run_engine, simulated_stream
from report import print_table, write_json

from detector.engine import outputs
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.model import FraudModel
from detector.engine.records import Label
from detector.evaluation import average_precision, roc_auc
from devkit.demo_stream import demo_config
from producers.config import SimulationConfig, preset
from producers.durations import parse_moment
from producers.simulator import Event, SimulatedTransaction

DAY = 86400.0
WINDOW_DAYS = 14.0
KINDS = {
    "stationary": "stationary",
    "pattern": "drift",
    "relabel": "relabel",
    "inflation": "inflation",
    "demo": "drift",
}
# Engine settings compared on every stream: drift handling off, and each recovery strategy kept.
STRATEGIES: dict[str, dict[str, Any]] = {
    "off": {"drift": {"enabled": False}},
    "on": {},
    "reset": {"drift": {"recovery": "reset"}},
}
ORACLES = ("oracle_reset", "oracle_ensemble")  # run with drift handling off, recovering at a set time
SIGNALS = (outputs.DRIFT_DETECTED, outputs.DRIFT_WARNING)
SWAPS = (outputs.MODEL_SWAPPED, outputs.MODEL_RESET)


def stream_config(
    kind: str, cards: int, terminals: int, days: float, seed: int, *, label_noise: dict[str, Any]
) -> SimulationConfig:
    if kind == "demo":
        base = replace(demo_config(seed), days=days)
    else:
        base = preset(KINDS[kind])
        population = replace(base.population, cards=cards, terminals=terminals)
        base = replace(base, seed=seed, days=days, population=population)
    return replace(base, labels=replace(base.labels, **label_noise))


class _Average:
    """Two models scoring as one (their mean probability), both learning every label."""

    def __init__(self, first: FraudModel, second: FraudModel) -> None:
        self.first, self.second = first, second

    @property
    def labels_learned(self) -> int:
        return self.first.labels_learned

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return 0.5 * (self.first.predict_proba_one(x) + self.second.predict_proba_one(x))

    def learn_one(self, x: dict[str, float], is_fraud: bool) -> None:
        self.first.learn_one(x, is_fraud)
        self.second.learn_one(x, is_fraud)

    def contributions(self, x: dict[str, float], top_k: int) -> list[tuple[str, float]]:
        return self.first.contributions(x, top_k)


def run_oracle(engine: DetectionEngine, stream: list[Event], strategy: str, at: float) -> Outcome:
    """The engine on ``stream``, recovering once, at event time ``at``, the way ``strategy`` says."""
    before = [item for item in stream if item.event_time < at]
    first = run_engine(engine, before)
    lifecycle = engine.learner.lifecycle  # the engine scores with the learner's own model
    fresh = lifecycle.fresh_model()
    if strategy == "oracle_reset":
        lifecycle.model = fresh
    else:  # _Average scores and learns as a FraudModel does, which is all the engine asks of its model
        lifecycle.model = cast(FraudModel, _Average(lifecycle.model, fresh))
    rest = run_engine(engine, stream[len(before) :])
    return Outcome(
        first.seconds + rest.seconds,
        first.scores + rest.scores,
        first.features | rest.features,
        first.events + rest.events,
        engine.generation,
    )


def change_time(config: SimulationConfig) -> float | None:
    """When the schedule's first change after the start starts; None for a stationary stream.

    A change at the start itself only sets the stream's initial state (as ``relabel`` does)."""
    moments = (parse_moment(change.at, config.start_time) for change in config.drift)
    starts = [moment for moment in moments if moment > config.start_time]
    return min(starts) if starts else None


def first_label_after(stream: list[Event], moment: float) -> float:
    """The time of the first label of a transaction made at or after ``moment``."""
    made = {item.transaction.transaction_id: item.event_time for item in _transactions(stream)}
    return min(
        item.event_time for item in stream if isinstance(item, Label) and made[item.transaction_id] >= moment
    )


def window_quality(stream: list[Event], scores: list[float], start: float, end: float) -> dict[str, float]:
    kept = [
        (item.is_fraud, score)
        for item, score in zip(_transactions(stream), scores, strict=True)
        if start <= item.event_time < end
    ]
    truth = [int(fraud) for fraud, _ in kept]
    values = [score for _, score in kept]
    return {"ap": average_precision(truth, values), "auc": roc_auc(truth, values)}


def outcome_row(
    outcome: Outcome, start: float, stream: list[Event], scores_window: tuple[float, float]
) -> dict:
    """The figures of one run: window quality, detection delay, alarms and swaps."""
    detections = [e for e in outcome.events if e.kind == outputs.DRIFT_DETECTED]
    swaps = [e for e in outcome.events if e.kind in SWAPS]
    after = [e.event_time for e in detections if e.event_time >= start]
    return {
        **window_quality(stream, outcome.scores, *scores_window),
        "delay_days": (after[0] - start) / DAY if after else math.nan,
        "detections": len(detections),
        "early_detections": sum(e.event_time < start for e in detections),
        "warnings": outcome.count(outputs.DRIFT_WARNING),
        "swaps": len(swaps),
        "early_swaps": sum(e.event_time < start for e in swaps),
        "score_drifts": outcome.count(outputs.SCORE_DRIFT),
        "generation": outcome.model_generation,
    }


def print_events(title: str, outcome: Outcome, origin: float) -> None:
    """Every drift signal and model change, with its day and detail: why the engine acted."""
    print(f"\n{title}: drift events")
    for event in outcome.events:
        if event.kind != outputs.SCORE_DRIFT:
            detail = ", ".join(f"{k}={_short(v)}" for k, v in event.detail.items())
            day = (event.event_time - origin) / DAY
            print(f"  day {day:6.2f}  gen {event.model_generation}  {event.kind}  {detail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=[*STRATEGIES, *ORACLES])
    parser.add_argument("--oracle-days", type=float, default=2.0)
    parser.add_argument("--missed-fraud-share", type=float, help="frauds labelled legitimate")
    parser.add_argument("--false-fraud-share", type=float, help="legitimate payments labelled fraud")
    parser.add_argument("--cards", type=int, default=2_000)
    parser.add_argument(
        "--stationary-cards", type=int, help="cards of the stationary stream (default --cards)"
    )
    parser.add_argument("--terminals", type=int, default=300)
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="logistic_regression")
    parser.add_argument("--events", action="store_true", help="print every drift event of every run")
    parser.add_argument("--json", default="out/bench/drift.json")
    args = parser.parse_args(argv)

    noise = {"missed_fraud_share": args.missed_fraud_share, "false_fraud_share": args.false_fraud_share}
    noise = {name: share for name, share in noise.items() if share is not None}
    rows = []
    for kind in args.kinds:
        cards = args.stationary_cards or args.cards if kind == "stationary" else args.cards
        config = stream_config(kind, cards, args.terminals, args.days, args.seed, label_noise=noise)
        started = time.perf_counter()
        stream = simulated_stream(config)
        transactions = sum(isinstance(item, SimulatedTransaction) for item in stream)
        seconds = time.perf_counter() - started
        print(
            f"\n{kind}: {transactions:,} transactions, {len(stream) - transactions:,} labels,"
            f" {config.population.cards:,} cards, {args.days:g} days; generated in {seconds:.0f} s"
        )
        change = change_time(config)
        end = config.start_time + args.days * DAY
        start = first_label_after(stream, change) if change is not None else end - WINDOW_DAYS * DAY
        window = (start, min(start + WINDOW_DAYS * DAY, end))
        for strategy in args.strategies:
            settings = STRATEGIES["off"] if strategy in ORACLES else STRATEGIES[strategy]
            engine = DetectionEngine(EngineConfig.from_dict({"model": {"kind": args.model}, **settings}))
            if strategy in ORACLES:
                outcome = run_oracle(engine, stream, strategy, start + args.oracle_days * DAY)
            else:
                outcome = run_engine(engine, stream)
            row = {"kind": kind, "strategy": strategy, "transactions": transactions}
            rows.append(row | outcome_row(outcome, start, stream, window))
            print_table(f"{kind}, {strategy} ({outcome.seconds:.0f} s)", [rows[-1]])
            if args.events:
                print_events(f"{kind}, {strategy}", outcome, config.start_time)
    print_table(
        f"drift handling, {args.model}: quality over {WINDOW_DAYS:g} days after the first post-change label",
        rows,
    )
    write_json(args.json, "drift", rows, cards=args.cards, days=args.days, model=args.model)


def _transactions(stream: list[Event]) -> list[SimulatedTransaction]:
    return [item for item in stream if isinstance(item, SimulatedTransaction)]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
