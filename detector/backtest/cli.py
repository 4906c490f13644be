"""``fraud-detector backtest``: run engine configurations side by side on history files and compare.

Every mistake (a bad option, file, record, config, rule or model name) ends the command with one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import NoReturn

from detector.backtest.comparison import compare, print_comparison, write_comparison
from detector.backtest.metrics import periods
from detector.backtest.output import write_reports
from detector.backtest.running import run_backtest
from detector.backtest.variants import BacktestError, build_variants, parse_rule
from detector.engine import MODEL_KINDS
from detector.engine.records import InvalidInput, parse_timestamp
from detector.history.options import add_input_options, replay_from_args

EXIT_FAILED = 2

EPILOG = """\
Outputs, under --out: per configuration <name>/scores.jsonl, <name>/events.jsonl,
<name>/audit.jsonl (what `fraud-detector audit report --audit-file` reads) and the HTML report
<name>/report/; labels.jsonl, every label read; comparison.json, the printed tables.

Example (two models, each also with drift handling off, on a simulated stream):
  fraud-simulate --preset drift --days 60 --output jsonl --output-dir history
  fraud-detector backtest history/transactions.jsonl --labels history/labels.jsonl \\
      --model logistic_regression --model hoeffding_adaptive_tree --baseline --weekly --out out/bt
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, as every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_FAILED, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fraud-detector backtest",
        description="Run engine configurations side by side on transaction history, with no Kafka,"
        " and compare them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(parser, merged_option=True)
    configs = parser.add_argument_group("configurations (the default engine if none is given)")
    configs.add_argument(
        "--config", type=Path, action="append", default=[], metavar="FILE", help="engine JSON (repeatable)"
    )
    configs.add_argument(
        "--model", action="append", default=[], metavar="KIND", help=f"one of {', '.join(MODEL_KINDS)}"
    )
    configs.add_argument(
        "--baseline",
        "--drift-off",
        action="store_true",
        help="also run each configuration with drift handling off",
    )
    configs.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="JSON",
        help="a policy rule added to every configuration, e.g. "
        '\'{"name": "big", "field": "amount", "op": ">", "value": 5000, "action": "review"}\'',
    )
    configs.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="input partitions, as the service's: one scorer each, events routed by customer as the "
        "producers' partitioner does, all sharing one learner (default: 1)",
    )
    configs.add_argument(
        "--no-sharing",
        action="store_true",
        help="one independent engine per partition instead (how the service scaled out before shared "
        "learning), for comparison",
    )
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--k", type=int, default=100, help="cards a day for card precision@k (default: 100)"
    )
    evaluation.add_argument("--from", dest="start", metavar="TIMESTAMP", help="evaluate from (RFC 3339)")
    evaluation.add_argument("--to", dest="end", metavar="TIMESTAMP", help="evaluate up to (RFC 3339)")
    evaluation.add_argument("--weekly", action="store_true", help="also a table for each week")
    parser.add_argument("--out", type=Path, default=Path("out/backtest"), help="(default: out/backtest)")
    parser.add_argument("--no-report", action="store_true", help="leave out each configuration's HTML report")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (there is none when not on a TTY)"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed in one line
        return int(stop.code or 0)
    try:
        return _backtest(args)
    except (ValueError, OSError) as error:  # BacktestError, ReplayError, InvalidInput: all ValueErrors
        print(f"{parser.prog}: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def _backtest(args: argparse.Namespace) -> int:
    if args.partitions < 1:
        raise BacktestError(f"--partitions must be at least 1, got {args.partitions}")
    if args.k < 1:
        raise BacktestError(f"--k must be at least 1, got {args.k}")
    start = _moment("--from", args.start)
    end = _moment("--to", args.end)
    if start is not None and end is not None and end <= start:
        raise BacktestError("--to must be after --from")
    rules = [parse_rule(text) for text in args.rule]
    variants = build_variants(args.config, args.model, args.baseline, rules)
    replay = replay_from_args(args)
    progress = not args.quiet and sys.stderr.isatty()
    names = tuple(rule.name for rule in rules)
    backtest = run_backtest(
        replay,
        variants,
        args.partitions,
        args.out,
        rules=names,
        progress=progress,
        shared=not args.no_sharing,
    )
    document = compare(backtest, periods(backtest.truth.columns()["times"], start, end, args.weekly), args.k)
    document["skipped"] = dict(replay.stats.skipped)
    print_comparison(document)
    print(f"\nwrote {write_comparison(document, args.out)}")
    if not args.no_report:
        _reports(args.out, [variant.name for variant in variants], start, end, args.k)
    return 0


def _reports(out: Path, names: list[str], start: float | None, end: float | None, k: int) -> None:
    if importlib.util.find_spec("matplotlib") is None:  # the report extra, not in the service image
        print(
            "no HTML reports: install the report extra: pip install 'fraud-detector[report]'", file=sys.stderr
        )
        return
    for path in write_reports(out, names, start, end, k):
        print(f"wrote {path}")


def _moment(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value, option)
    except InvalidInput as error:
        raise BacktestError(error.detail) from None


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
