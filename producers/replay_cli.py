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

from detector.history.options import add_input_options, replay_from_args
from detector.history.reading import ReplayError
from producers.cli_common import (
    add_output_options,
    add_pacing_options,
    add_version_option,
    run,
    setup_logging,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraud-replay",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(parser)
    add_output_options(parser)
    add_pacing_options(parser)
    add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        replay = replay_from_args(args)
    except ValueError as error:
        parser.error(str(error))

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
