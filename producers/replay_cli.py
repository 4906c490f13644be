"""fraud-replay: publish recorded transactions and their labels, in event-time order.

Inputs are JSONL in the wire format, or CSV (by the .csv suffix) with a header line. From CSV only
the contract fields are published (transaction_id, timestamp, customer_id, terminal_id, amount and,
if present, currency); JSONL records are published with their extra fields.

Labels come from --labels FILE, or from a column of the transaction file (--label-column), each
stamped with its transaction's time plus --label-delay. A label stamped T is published after every
transaction stamped up to T.

Inputs must be sorted by time: a record older than the newest one seen so far is a bad record, unless
it is at most --max-disorder older, in which case it is put back in place (a buffer holds that much
event time). A bad record is reported with its file and line; by default it stops the replay
(--on-error stop, exit code 1), with --on-error skip it is skipped and counted in the summary.

Example (the Fraud Detection Handbook's simulated data set, exported to CSV):
  fraud-replay transactions.csv --map transaction_id=TRANSACTION_ID --map timestamp=TX_DATETIME \\
      --map customer_id=CUSTOMER_ID --map terminal_id=TERMINAL_ID --map amount=TX_AMOUNT \\
      --timestamp-format '%Y-%m-%d %H:%M:%S' --label-column TX_FRAUD --label-delay 7d --speed 86400
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from producers.cli_common import (
    add_output_options,
    add_pacing_options,
    add_version_option,
    duration,
    key_value,
    run,
    setup_logging,
)
from producers.replay import Replay, ReplayError, SourceFormat


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraud-replay",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("transactions", type=Path, help="transaction file (.jsonl or .csv)")
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
        help="on a bad record: stop with exit code 1 (default), or skip it and count it",
    )
    add_output_options(parser)
    add_pacing_options(parser)
    add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        replay = Replay(
            args.transactions,
            transaction_format=SourceFormat(dict(args.map), args.timestamp_format),
            labels=args.labels,
            label_format=SourceFormat(dict(args.label_map), args.timestamp_format),
            label_column=args.label_column,
            label_delay=args.label_delay,
            max_disorder=args.max_disorder,
            on_error=args.on_error,
        )
    except ValueError as error:
        parser.error(str(error))
    for path in filter(None, (args.transactions, args.labels)):
        if not path.is_file():
            parser.error(f"no such file: {path}")

    def summary() -> dict[str, object]:
        stats = replay.stats
        counts: dict[str, object] = {
            "transactions": stats.transactions,
            "labels": stats.labels,
            "skipped": sum(stats.skipped.values()),
        }
        counts.update({f"skipped ({reason})": n for reason, n in stats.skipped.most_common()})
        return counts

    return run(args, replay, summary, stop_on=(ReplayError,))


if __name__ == "__main__":
    sys.exit(main())
