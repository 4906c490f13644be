"""Benchmark 4: the engine's memory against active cards and pending scores, and that it stays bounded.

What: resident memory (VmRSS from /proc/self/status, after a full garbage collection) of a bare
DetectionEngine in memory, no Kafka, with the engine's own gauges (cards, terminals, pending
scores, queued labels) beside it. Each size runs in a fresh child process, so its figures do not
inherit another size's heap.

How, in event time, with synthetic transactions (the default logistic regression model):

1. warm-up: one card touches every terminal, so terminals and the model are in the baseline;
2. wave 1: ``N`` new cards make ``--tx-per-card`` transactions each within one day; nothing is
   labelled, so every transaction stays as a pending score. RSS delta / N = bytes per card with
   its pending scores;
3. pending: ``N`` more transactions from 100 of those cards (no new entities): RSS delta / N =
   bytes per pending score. Bytes per card alone = the first figure minus its pending scores;
4. expiry: a trickle of one transaction every 6 hours from 20 new cards moves event time past the
   entity TTL (30 days) and the label horizon (60 days), plus one sweep interval; the gauges must
   fall back to the trickle's small set. RSS does not shrink much (CPython keeps freed memory);
5. wave 2: the same load again with new cards. RSS above the peak of steps 2-3 would mean memory
   is not reused; at or below it, state is bounded by what is active.

1M cards takes many minutes in Python; a size is run only if the previous one projects it to
finish within ``--max-seconds`` and to fit in 80% of the available memory; otherwise the
projection is printed instead.

    python bench/memory_bench.py
    python bench/memory_bench.py --cards 10000 100000 1000000 --max-seconds 3000
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import print_table, write_json

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.features import DAY, HOUR
from detector.engine.records import Transaction

START = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
MB = 1024 * 1024
PENDING_CARDS = 100  # the cards that make the pending-score transactions of step 3
TRICKLE_CARDS = 20
TRICKLE_STEP = 6 * HOUR  # well under the engine's 1-day future-skew tolerance


def meminfo_bytes(field: str, path: str = "/proc/meminfo") -> int:
    """A ``kB`` field of a /proc status file, in bytes."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss() -> int:
    """Resident memory after a full collection, so garbage waiting for the collector does not count."""
    gc.collect()
    return meminfo_bytes("VmRSS", "/proc/self/status")


def synthetic(
    tag: str, cards: int, count: int, *, start: float, span: float, terminals: int, card_prefix: str = ""
) -> Iterator[Transaction]:
    """``count`` transactions evenly over ``span`` seconds, round robin over the cards and terminals.

    Cards are named after ``card_prefix`` (default ``tag``), so a later load can reuse earlier cards.
    """
    step, prefix = span / count, card_prefix or tag
    for i in range(count):
        yield Transaction(
            f"{tag}-{i}", start + i * step, f"{prefix}-{i % cards}", f"term-{i % terminals}", 5.0 + i % 500
        )


def feed(engine: DetectionEngine, transactions: Iterator[Transaction]) -> float:
    """Seconds to score every transaction."""
    process = engine.process_transaction
    started = time.perf_counter()
    for tx in transactions:
        process(tx)
    return time.perf_counter() - started


def stage(engine: DetectionEngine) -> dict[str, int]:
    gauges = engine.gauges()
    return {
        "rss": rss(),
        "cards": gauges["cards"],
        "terminals": gauges["terminals"],
        "pending": gauges["pending_scores"],
        "queued": gauges["queued_labels"],
    }


def child(cards: int, per_card: int, terminals: int) -> dict[str, Any]:
    """Steps 1-5 of the module docstring for one size, in this (fresh) process."""
    engine = DetectionEngine(EngineConfig())
    ttl = max(engine.config.features.entity_ttl, engine.config.label_horizon)

    def touch_terminals(tag: str, at: float) -> None:
        feed(engine, synthetic(tag, 1, terminals, start=at - HOUR, span=HOUR, terminals=terminals))

    touch_terminals("warm1", START)
    stages = {"base": stage(engine)}
    wave = synthetic("w1", cards, cards * per_card, start=START, span=DAY, terminals=terminals)
    wave_seconds = feed(engine, wave)
    stages["wave 1"] = stage(engine)
    pending_cards = min(PENDING_CARDS, cards)
    pending = synthetic(
        "p", pending_cards, cards, start=START + DAY, span=DAY, terminals=terminals, card_prefix="w1"
    )
    feed(engine, pending)
    stages["peak"] = stage(engine)
    trickle_start, trickle_span = START + 2 * DAY, ttl * (1 + 1 / 64) + DAY
    steps = int(trickle_span // TRICKLE_STEP)
    trickle = synthetic(
        "t", TRICKLE_CARDS, steps, start=trickle_start, span=trickle_span, terminals=TRICKLE_CARDS
    )
    feed(engine, trickle)
    stages["expired"] = stage(engine)
    wave2_start = trickle_start + trickle_span
    touch_terminals("warm2", wave2_start)
    feed(engine, synthetic("w2", cards, cards * per_card, start=wave2_start, span=DAY, terminals=terminals))
    stages["wave 2"] = stage(engine)
    return {"stages": stages, "us_per_tx": 1e6 * wave_seconds / (cards * per_card)}


def summary(cards: int, per_card: int, stages: dict[str, dict[str, int]], us_per_tx: float) -> dict[str, Any]:
    base, wave1, peak, expired, wave2 = (
        stages[name] for name in ("base", "wave 1", "peak", "expired", "wave 2")
    )
    per_card_with_pending = (wave1["rss"] - base["rss"]) / cards
    per_pending = (peak["rss"] - wave1["rss"]) / (peak["pending"] - wave1["pending"])
    return {
        "cards": cards,
        "tx/card": per_card,
        "us/tx": us_per_tx,
        "base MB": base["rss"] / MB,
        "B/card+pending": per_card_with_pending,
        "B/pending score": per_pending,
        "B/card alone": per_card_with_pending - per_card * per_pending,
        "peak MB": peak["rss"] / MB,
        "expired MB": expired["rss"] / MB,
        "wave 2 MB": wave2["rss"] / MB,
        "wave 2 over peak MB": (wave2["rss"] - peak["rss"]) / MB,
    }


def gauge_rows(cards: int, stages: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    return [
        {
            "size": cards,
            "stage": name,
            **{k: v for k, v in values.items() if k != "rss"},
            "RSS MB": values["rss"] / MB,
        }
        for name, values in stages.items()
    ]


def run_child(cards: int, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """One size in a fresh interpreter; its result and wall seconds."""
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(cards),
            "--tx-per-card",
            str(args.tx_per_card),
            "--terminals",
            str(args.terminals),
        ],
        capture_output=True,
        check=True,
    )
    return orjson.loads(done.stdout.splitlines()[-1]), time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cards", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tx-per-card", type=int, default=3)
    parser.add_argument("--terminals", type=int, default=1_000)
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="skip a size projected to take longer"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", default="out/bench/memory.json")
    args = parser.parse_args(argv)
    if args.child:
        print(orjson.dumps(child(args.child, args.tx_per_card, args.terminals)).decode())
        return

    rows: list[dict[str, Any]] = []
    gauges: list[dict[str, Any]] = []
    skipped: list[str] = []
    previous: tuple[int, float, int] | None = None  # cards, seconds, peak RSS of the last size run
    for cards in sorted(args.cards):
        if previous is not None:
            scale = cards / previous[0]
            seconds, peak = previous[1] * scale, previous[2] * scale
            if seconds > args.max_seconds or peak > 0.8 * meminfo_bytes("MemAvailable"):
                skipped.append(
                    f"{cards:,} cards not run: projected from {previous[0]:,} cards to take"
                    f" {seconds / 60:.0f} min and {peak / 2**30:.1f} GB"
                    f" (limits: {args.max_seconds:.0f} s, 80% of available memory)"
                )
                continue
        result, seconds = run_child(cards, args)
        stages = result["stages"]
        rows.append(summary(cards, args.tx_per_card, stages, result["us_per_tx"]))
        gauges.extend(gauge_rows(cards, stages))
        previous = (cards, seconds, stages["peak"]["rss"])
        print_table(f"{cards:,} cards ({seconds:.0f} s)", rows[-1:])
    print_table("engine state by stage: gauges and resident memory", gauges)
    print_table(
        "bytes per active card and per pending score (RSS deltas), and RSS after expiry and a second wave",
        rows,
    )
    print("\n".join(["", *skipped]))
    write_json(
        args.json,
        "memory",
        rows,
        gauges=gauges,
        skipped=skipped,
        tx_per_card=args.tx_per_card,
        terminals=args.terminals,
    )


if __name__ == "__main__":
    main()
