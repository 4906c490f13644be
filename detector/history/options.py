"""The command-line options that say how to read history files, declared once for every command
that reads them (``fraud-replay``, ``fraud-detector backtest``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from detector.history.reading import Replay, SourceFormat
from detector.kafka_config import parse_settings
from detector.validation import parse_duration


def key_value(text: str) -> tuple[str, str]:
    """An argparse type for KEY=VALUE options."""
    try:
        ((key, value),) = parse_settings([text]).items()
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return key, value


def duration(text: str) -> float:
    """An argparse type for durations such as 7d, so a mistake is a usage error, not a traceback."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_input_options(parser: argparse.ArgumentParser, merged_option: bool = False) -> None:
    """The transaction file (positional) and how to read it and its labels.

    ``merged_option`` adds ``--events FILE``, one file of transactions and labels as published,
    instead of the transaction file.
    """
    transactions_help = "transaction file (.jsonl or .csv)"
    if merged_option:
        parser.add_argument("transactions", type=Path, nargs="?", help=f"{transactions_help}, or --events")
    else:
        parser.add_argument("transactions", type=Path, help=transactions_help)
    inputs = parser.add_argument_group("input")
    inputs.add_argument(
        "--map",
        type=key_value,
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read contract FIELD from COLUMN of the transaction file (repeatable)",
    )
    inputs.add_argument(
        "--timestamp-format",
        metavar="STRPTIME",
        help="format of timestamps that are not RFC 3339, taken as UTC, e.g. '%%Y-%%m-%%d %%H:%%M:%%S'",
    )
    labels = inputs.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=Path, help="label file (.jsonl or .csv)")
    labels.add_argument(
        "--label-column", metavar="COLUMN", help="take labels from this column (1/0, true/false)"
    )
    if merged_option:
        labels.add_argument(
            "--events",
            type=Path,
            metavar="FILE",
            help="one JSONL file of transactions and labels in the order published (as fraud-replay "
            "sends them), instead of a transaction file",
        )
    inputs.add_argument(
        "--label-map",
        type=key_value,
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="like --map, for --labels",
    )
    inputs.add_argument(
        "--label-delay",
        type=duration,
        default=0.0,
        metavar="DURATION",
        help="with --label-column: a label's time after its transaction's, e.g. 7d (default: 0s)",
    )
    inputs.add_argument(
        "--max-disorder",
        type=duration,
        default=0.0,
        metavar="DURATION",
        help="how far back in time a record may be and still be put in order, e.g. 5m (default: 0s: "
        "the input must be sorted)",
    )
    inputs.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="on a bad record: stop (default), or skip it and count it",
    )


def replay_from_args(args: argparse.Namespace) -> Replay:
    """The reader the options describe; ValueError for options that do not fit or a missing file."""
    merged = getattr(args, "events", None)
    if merged is not None and args.transactions is not None:
        raise ValueError("give a transaction file or --events, not both")
    source = merged if merged is not None else args.transactions
    if source is None:
        raise ValueError("give a transaction file, or --events FILE")
    replay = Replay(
        source,
        transaction_format=SourceFormat(dict(args.map), args.timestamp_format),
        labels=args.labels,
        label_format=SourceFormat(dict(args.label_map), args.timestamp_format),
        label_column=args.label_column,
        label_delay=args.label_delay,
        max_disorder=args.max_disorder,
        on_error=args.on_error,
        merged=merged is not None,
    )
    for path in filter(None, (source, args.labels)):
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
    return replay
