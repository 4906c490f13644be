"""fraud-simulate: publish a simulated payment stream with delayed labels to Kafka or JSONL files.

Examples:
  fraud-simulate --transactions 1000000                     # as fast as possible to localhost:9092
  fraud-simulate --preset drift --speed 3600                # an event-time hour every second
  fraud-simulate --config my.json --output jsonl --truth-file out/truth.jsonl
  fraud-simulate --preset gradual --print-config            # show a preset as a JSON config
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from detector.engine.records import Label, Transaction
from producers.cli_common import (
    add_output_options,
    add_pacing_options,
    add_version_option,
    run,
    setup_logging,
)
from producers.config import PRESETS, ConfigError, SimulationConfig, config_to_dict, load_config, preset
from producers.simulator import SimulatedTransaction, Simulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraud-simulate",
        description=__doc__.split("\n\n")[0],
        epilog="\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim = parser.add_argument_group("simulation")
    # argparse expands %-formats in help, and the presets' docstrings say "0.4% fraud".
    presets = "; ".join(f"{name}: {factory.__doc__}" for name, factory in PRESETS.items()).replace("%", "%%")
    sim.add_argument("--preset", choices=PRESETS, default="default", help=f"starting config ({presets})")
    sim.add_argument("--config", type=Path, help="JSON file overriding the preset field by field")
    sim.add_argument("--seed", type=int, help="random seed (same seed, same stream)")
    sim.add_argument("--start", help="first day, RFC 3339 (default: 2026-01-01T00:00:00Z)")
    sim.add_argument("--days", type=float, help="event-time days to simulate")
    sim.add_argument(
        "--transactions",
        type=int,
        help="stop after this many transactions (with no --days: however many days)",
    )
    sim.add_argument(
        "--print-config", action="store_true", help="print the resulting config as JSON and exit"
    )
    sim.add_argument(
        "--truth-file",
        type=Path,
        help="also write each transaction's ground truth (is_fraud, scenario) to this JSONL file",
    )
    add_output_options(parser)
    add_pacing_options(parser)
    add_version_option(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    config = preset(args.preset)
    if args.config is not None:
        config = load_config(args.config, config)
    changes: dict[str, Any] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.start is not None:
        changes["start"] = args.start
    if args.transactions is not None:
        changes["max_transactions"] = args.transactions
        changes["days"] = args.days
    elif args.days is not None:
        changes["days"] = args.days
    try:
        return replace(config, **changes)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        config = config_from_args(args)
    except (ConfigError, ValueError) as error:
        parser.error(str(error))
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=2))
        return 0
    simulator = Simulator(config)
    with ExitStack() as files:
        truth = None
        if args.truth_file is not None:
            try:
                args.truth_file.parent.mkdir(parents=True, exist_ok=True)
                truth = files.enter_context(args.truth_file.open("wb"))
            except OSError as error:
                parser.error(f"--truth-file {args.truth_file}: cannot write: {error.strerror}")
        return run(args, _published(simulator, truth), lambda: _summary(simulator))


def _published(simulator: Simulator, truth: BinaryIO | None) -> Iterator[Transaction | Label]:
    """The simulated stream as the wire sees it, with the truth split off into ``truth``."""
    for event in simulator:
        if isinstance(event, SimulatedTransaction):
            if truth is not None:
                truth.write(_truth_line(event))
            yield event.transaction
        else:
            yield event


def _truth_line(event: SimulatedTransaction) -> bytes:
    transaction = event.transaction
    record = {
        "transaction_id": transaction.transaction_id,
        "customer_id": transaction.customer_id,
        "timestamp": transaction.timestamp,
        "is_fraud": event.is_fraud,
        "scenario": event.scenario,
    }
    return orjson.dumps(record) + b"\n"


def _summary(simulator: Simulator) -> dict[str, object]:
    stats = simulator.stats
    counts: dict[str, object] = {
        "transactions": stats.transactions,
        "frauds": sum(stats.frauds.values()),
    }
    counts.update(
        {f"frauds ({scenario.name})": stats.frauds[scenario.name] for scenario in simulator.scenarios}
    )
    counts.update(
        {"labels": stats.labels, "unlabelled": stats.unlabelled, "false labels": stats.false_labels}
    )
    return counts


if __name__ == "__main__":
    sys.exit(main())
