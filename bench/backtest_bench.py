"""Benchmark: the backtest's events/s per configuration, against the bare engine on the same stream.

A simulated stream is written to JSONL files (transactions, labels) as fraud-simulate writes them;
then the bare engine runs on the events in memory (the ceiling), and ``fraud-detector backtest``'s
loop runs on the files for each model: reading, routing, scoring, the scores, events and audit
files. "events/s" counts transactions and labels over the time spent on each configuration (engine
and outputs); "wall events/s" is the whole run, reading the files included, for that one
configuration. The ratio to the bare engine is the backtest's own overhead.

    python bench/backtest_bench.py --days 10 --cards 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import run_engine
from report import print_table, write_json

from detector.backtest.running import run_backtest
from detector.backtest.variants import build_variants
from detector.engine import MODEL_KINDS
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.model import ModelConfig
from detector.engine.records import Label
from detector.history.reading import Replay
from producers.config import preset
from producers.simulator import SimulatedTransaction, simulate


def write_history(directory: Path, config_name: str, days: float, cards: int, terminals: int) -> list:
    base = preset(config_name)
    config = replace(base, days=days, population=replace(base.population, cards=cards, terminals=terminals))
    stream = list(simulate(config))
    with (
        (directory / "transactions.jsonl").open("wb") as txs,
        (directory / "labels.jsonl").open("wb") as labels,
    ):
        for item in stream:
            if isinstance(item, SimulatedTransaction):
                txs.write(item.transaction.to_json() + b"\n")
            else:
                labels.write(item.to_json() + b"\n")
    return stream


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default")
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--cards", type=int, default=2_000)
    parser.add_argument("--terminals", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["logistic_regression"], choices=MODEL_KINDS)
    parser.add_argument("--json", default="out/bench/backtest.json")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        stream = write_history(directory, args.preset, args.days, args.cards, args.terminals)
        events = len(stream)
        print(f"stream: {events:,} events ({sum(isinstance(e, Label) for e in stream):,} labels)")
        for kind in args.models:
            bare = run_engine(DetectionEngine(EngineConfig(model=ModelConfig(kind=kind))), stream)
            replay = Replay(directory / "transactions.jsonl", labels=directory / "labels.jsonl")
            began = time.perf_counter()
            backtest = run_backtest(
                replay, build_variants([], [kind], False), args.partitions, directory / "out"
            )
            wall = time.perf_counter() - began
            (run,) = backtest.runs
            rows.append(
                {
                    "model": kind,
                    "engine events/s": events / bare.seconds,
                    "events/s": backtest.events / run.seconds,
                    "wall events/s": backtest.events / wall,
                    "overhead": run.seconds / bare.seconds - 1,
                }
            )
            print_table(f"backtest, {kind}", rows[-1:])
    print_table("backtest per configuration (events = transactions + labels)", rows)
    write_json(args.json, "backtest", rows, events=events, days=args.days, partitions=args.partitions)


if __name__ == "__main__":
    main()
