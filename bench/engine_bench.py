"""Benchmark 1: the bare engine in memory on a simulated stream, for each model type.

The stream is generated once, before any timing, and each model sees exactly the same events.
Reported per model: events/s (transactions + labels through the engine), microseconds per
transaction, and prequential quality of the scores (every transaction is scored before its label
is known): ROC AUC, average precision and card precision@100 per day, after a burn-in period in
which the first labels have not arrived yet. "best CP@100" is what a perfect ranking would get:
with few compromised cards a day, even a perfect model cannot fill 100 slots.

With ``--state disk`` each model also runs with its cards, scored ids and pending scores in
RocksDB (``detector/state/``, as the service keeps them), checkpointed as the service does once
``--checkpoint-changes`` entries changed (drain, snapshot, local write; no Kafka): its us/tx, the
longest checkpoint, and whether its scores are those of the engine in memory.

For logistic regression it also times the bare River pipeline alone, in the same run: the same
``StandardScaler | LogisticRegression`` predicting each transaction and learning each label that
joined, on the engine's own feature dicts, precomputed. "engine / bare River" is what the rest of
the engine (features, label join, drift, pending scores) costs on top of the model. Times are CPU
seconds of this process (the machine is shared).

    python bench/engine_bench.py --days 30 --cards 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import print_table, write_json

from detector.engine import MODEL_KINDS
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.model import build_classifier
from detector.engine.outputs import EngineEvent
from detector.engine.records import Label
from detector.evaluation import average_precision, card_precision_at_k, roc_auc
from detector.state.database import StateDatabase
from producers.config import SimulationConfig, preset
from producers.simulator import Event, SimulatedTransaction, simulate

DAY = 86400.0


@dataclass
class Outcome:
    """What one model did with the stream: timing and the scores to evaluate."""

    seconds: float
    scores: list[float]
    features: dict[str, dict[str, float]]  # transaction id -> what the model saw
    events: list[EngineEvent]
    model_generation: int
    longest_checkpoint: float = 0.0  # seconds, with the state on disk

    def count(self, kind: str) -> int:
        return sum(event.kind == kind for event in self.events)


def simulated_stream(config: SimulationConfig) -> list[Event]:
    return list(simulate(config))


def run_engine(
    engine: DetectionEngine, stream: list[Event], database: StateDatabase | None = None, changes: int = 0
) -> Outcome:
    """The engine over ``stream``; with ``database``, checkpointed once ``changes`` entries changed."""
    scores: list[float] = []
    features: dict[str, dict[str, float]] = {}
    events: list[EngineEvent] = []
    longest_checkpoint = 0.0
    process_transaction, process_label = engine.process_transaction, engine.process_label
    started = time.process_time()
    for item in stream:
        if isinstance(item, Label):
            process_label(item)
        else:
            decision = process_transaction(item.transaction)
            scores.append(decision.score)
            features[item.transaction.transaction_id] = decision.features
        if engine._events:
            events.extend(engine.pop_events())
        if database is not None and database.changed >= changes:
            began = time.perf_counter()
            drained = database.drain()
            engine.snapshot(database)
            database.write(drained, "bench", str(began))
            longest_checkpoint = max(longest_checkpoint, time.perf_counter() - began)
    seconds = time.process_time() - started
    return Outcome(seconds, scores, features, events, engine.generation, longest_checkpoint)


def bare_river_seconds(
    stream: list[Event], features: dict[str, dict[str, float]], config: EngineConfig
) -> float:
    """CPU seconds of the engine's River pipeline alone on ``features``: predict every transaction,
    learn every label whose transaction was scored, in stream order."""
    pipeline = build_classifier(config.model)
    predict, learn = pipeline.predict_proba_one, pipeline.learn_one
    steps = [
        (features[item.transaction_id], item.is_fraud)
        if isinstance(item, Label)
        else (features[item.transaction.transaction_id], None)
        for item in stream
        if not isinstance(item, Label) or item.transaction_id in features
    ]
    started = time.process_time()
    for x, is_fraud in steps:
        # River takes x as dict[Hashable, Any], which no dict[str, float] is (dict is invariant).
        if is_fraud is None:
            predict(x)  # type: ignore[arg-type]
        else:
            learn(x, is_fraud)  # type: ignore[arg-type]
    return time.process_time() - started


def quality(stream: list[Event], scores: list[float], burn_in_days: float) -> dict[str, float]:
    transactions = [item for item in stream if isinstance(item, SimulatedTransaction)]
    start = transactions[0].event_time + burn_in_days * DAY
    kept = [
        (item, score) for item, score in zip(transactions, scores, strict=True) if item.event_time >= start
    ]
    truth = [int(item.is_fraud) for item, _ in kept]
    values = [score for _, score in kept]
    days = [int(item.event_time // DAY) for item, _ in kept]
    cards = [item.transaction.customer_id for item, _ in kept]
    return {
        "auc": roc_auc(truth, values),
        "avg_precision": average_precision(truth, values),
        "card_prec@100": card_precision_at_k(days, cards, values, truth, k=100),
        "best_card_prec@100": card_precision_at_k(days, cards, truth, truth, k=100),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default", help="simulator preset (default, drift, gradual)")
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--cards", type=int, default=2_000)
    parser.add_argument("--terminals", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burn-in-days", type=float, default=7.0)
    parser.add_argument("--models", nargs="+", default=list(MODEL_KINDS), choices=MODEL_KINDS)
    parser.add_argument("--state", choices=("memory", "disk"), default="memory")
    parser.add_argument("--checkpoint-changes", type=int, default=5_000)
    parser.add_argument("--json", default="out/bench/engine.json")
    args = parser.parse_args(argv)

    base = preset(args.preset)
    population = replace(base.population, cards=args.cards, terminals=args.terminals)
    config = replace(base, seed=args.seed, days=args.days, population=population)
    generation_started = time.perf_counter()
    stream = simulated_stream(config)
    generation_seconds = time.perf_counter() - generation_started
    n_transactions = sum(isinstance(item, SimulatedTransaction) for item in stream)
    n_frauds = sum(isinstance(item, SimulatedTransaction) and item.is_fraud for item in stream)
    print(
        f"stream: {n_transactions:,} transactions ({n_frauds:,} fraud),"
        f" {len(stream) - n_transactions:,} labels,"
        f" {args.days:g} days; generated in {generation_seconds:.1f} s"
    )

    rows, disk_rows = [], []
    for kind in args.models:
        engine_config = EngineConfig.from_dict({"model": {"kind": kind}})
        engine = DetectionEngine(engine_config)
        outcome = run_engine(engine, stream)
        if kind == "logistic_regression":
            bare = bare_river_seconds(stream, outcome.features, engine_config)
            print(
                f"bare River pipeline: {1e6 * bare / n_transactions:.1f} us/tx against the engine's"
                f" {1e6 * outcome.seconds / n_transactions:.1f}: engine / bare River ="
                f" {outcome.seconds / bare:.2f} (goal <= 1.4)"
            )
        row = {
            "model": kind,
            "events/s": len(stream) / outcome.seconds,
            "tx/s": n_transactions / outcome.seconds,
            "us/tx": 1e6 * outcome.seconds / n_transactions,
            **quality(stream, outcome.scores, args.burn_in_days),
            "drifts": outcome.count("drift_detected"),
            "generation": outcome.model_generation,
        }
        rows.append(row)
        if args.state == "disk":
            with tempfile.TemporaryDirectory() as directory:
                database = StateDatabase(Path(directory) / "state")
                on_disk = run_engine(
                    DetectionEngine(engine_config, database), stream, database, args.checkpoint_changes
                )
                database.close()
            disk_rows.append(
                {
                    "model": kind,
                    "us/tx in memory": row["us/tx"],
                    "us/tx on disk": 1e6 * on_disk.seconds / n_transactions,
                    "longest checkpoint ms": 1000 * on_disk.longest_checkpoint,
                    "same scores": on_disk.scores == outcome.scores,
                }
            )
        print_table(f"engine, {kind}", [row])
    print_table("engine in memory (events = transactions + labels)", rows)
    if disk_rows:
        print_table(f"state on disk, checkpointed every {args.checkpoint_changes:,} changes", disk_rows)
    write_json(
        args.json,
        "engine",
        rows + disk_rows,
        transactions=n_transactions,
        frauds=n_frauds,
        events=len(stream),
        days=args.days,
    )


if __name__ == "__main__":
    main()
