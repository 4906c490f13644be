"""``fraud-detector audit replay | verify | report``: the audit trail for analysts and auditors.

Each command reads the audit topic as committed data only, assigning partitions itself (no consumer
group, no commits), so it never disturbs the detector or another reader. Exit codes: 0 done (verify:
every chain intact), 1 verify found a problem, 2 the command could not run (bad option, Kafka or
file error), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from pathlib import Path

from confluent_kafka import KafkaException

from detector.audit.cli_options import add_time_filters, kafka_client, moment
from detector.audit.export import CsvSink, ExpandedJsonlSink, JsonlSink, RecordSink, export
from detector.audit.reader import ReadError, TopicReader, progress_wanted
from detector.audit.report_cli import report_command, report_options
from detector.audit.selection import RecordFilter, customer_ids
from detector.audit.verify import ChainVerifier, load_heads, save_heads

EXIT_BROKEN, EXIT_FAILED, EXIT_INTERRUPTED = 1, 2, 130
Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit`` with its subcommands; each sets ``func(args) -> exit code``."""
    audit = subparsers.add_parser("audit", help="replay, verify and report on the audit trail")
    commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    common = _common_options()

    def command(name: str, handler: Handler, summary: str, description: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=summary, description=description)
        parser.set_defaults(func=_guarded(handler))
        return parser

    _replay_options(
        command(
            "replay",
            replay_command,
            "write selected audit records as JSONL or CSV",
            "Write the audit records that match every filter given, in topic order within each"
            " partition. JSONL lines are the records exactly as written.",
        )
    )
    _verify_options(
        command(
            "verify",
            verify_command,
            "recompute every partition's hash chain; exit 1 at the first break",
            "Check that every audit record is intact, in sequence and none is missing, and report"
            " the first problem of each partition exactly (every problem with --all). A pass cannot"
            " show that records were cut off the end: save the heads (--save-head) and check"
            " against them later (--head).",
        )
    )
    report_options(
        command(
            "report",
            report_command,
            "HTML report of alerts, precision, scores, drift and latency",
            "Join the decisions with their labels and write report.html with its PNG figures into a"
            " directory.",
        )
    )


def _replay_options(parser: argparse.ArgumentParser) -> None:
    add_time_filters(parser)
    selection = parser.add_argument_group("filters (repeat an option to allow several values)")
    selection.add_argument("--customer", action="append", default=[], help="customer (card) id")
    selection.add_argument("--transaction-id", action="append", default=[])
    selection.add_argument("--decision", action="append", default=[], choices=("approve", "review", "block"))
    selection.add_argument(
        "--record-type", action="append", default=[], help="decision, drift_detected, model_swapped, ..."
    )
    selection.add_argument("--generation", action="append", default=[], type=int, help="model generation")
    parser.add_argument(
        "--pseudonym-key-env",
        default="FRAUD_PSEUDONYM_KEY",
        metavar="NAME",
        help="environment variable with the detector's pseudonym key, so --customer also finds"
        " pseudonymised ids (default: FRAUD_PSEUDONYM_KEY)",
    )
    parser.add_argument(
        "--start-time",
        type=moment,
        metavar="TIME",
        help="skip records written to Kafka before TIME (write time, not event time): faster reads"
        " of a long topic",
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep reading new records until interrupted (Ctrl-C)"
    )
    parser.add_argument("--output", default="-", help="file to write (default: - for stdout)")
    parser.add_argument(
        "--format",
        choices=("jsonl", "expanded", "csv"),
        help="jsonl: the records as written (verifiable); expanded: JSONL with the features by name;"
        " csv. Default: csv for an --output ending in .csv, else jsonl",
    )


def _verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hmac-key-env",
        default="FRAUD_AUDIT_HMAC_KEY",
        metavar="NAME",
        help="environment variable with the detector's chain key, if it uses one"
        " (default: FRAUD_AUDIT_HMAC_KEY)",
    )
    parser.add_argument(
        "--head",
        type=Path,
        help="heads saved by an earlier --save-head: fail if the chains no longer reach them",
    )
    parser.add_argument(
        "--save-head", type=Path, help="after a pass, write each partition's last seq and hash to this file"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        dest="every_break",
        help="report every break of each partition, not only the first: checking goes on after a"
        " break from the broken record's place in the chain",
    )


def replay_command(args: argparse.Namespace) -> int:
    key = os.environ.get(args.pseudonym_key_env, "").encode() or None
    keep = RecordFilter(
        since=args.since,
        until=args.until,
        customers=customer_ids(args.customer, key),
        transaction_ids=frozenset(args.transaction_id),
        decisions=frozenset(args.decision),
        record_types=frozenset(args.record_type),
        generations=frozenset(args.generation),
    )
    start_ms = None if args.start_time is None else round(args.start_time * 1000)
    with _sink(args) as sink, TopicReader(kafka_client(args), args.topic) as reader:
        try:
            counts = export(reader.messages(start_ms, args.follow, progress_wanted(args.quiet)), keep, sink)
        except KeyboardInterrupt:
            return 0 if args.follow else EXIT_INTERRUPTED  # Ctrl-C is how a follow ends
    print(f"replay: {counts.read:,} records read, {counts.written:,} written", file=sys.stderr)
    if counts.unreadable:
        print(
            f"replay: {counts.unreadable:,} records were not JSON objects (run audit verify)", file=sys.stderr
        )
    return 0


def verify_command(args: argparse.Namespace) -> int:
    key = os.environ.get(args.hmac_key_env, "").encode() or None
    expected = load_heads(args.head) if args.head else None
    with TopicReader(kafka_client(args), args.topic) as reader:
        verifier = ChainVerifier(key, reader.partitions, expected, args.every_break)
        for message in reader.messages(progress=progress_wanted(args.quiet)):
            verifier.add(message.partition, message.offset, message.value)
    result = verifier.result()
    digest = f"HMAC-SHA256 with the key in ${args.hmac_key_env}" if key else "SHA-256, no key"
    print(f"topic {args.topic}, chain digest {digest}")
    print("\n".join(result.summary_lines()))
    if expected is not None:
        print(f"checked against the heads in {args.head}")
    if not result.ok:
        return EXIT_BROKEN
    if args.save_head:
        save_heads(args.save_head, args.topic, result)
        print(f"heads saved to {args.save_head}: keep it where the audit topic's writers cannot change it")
    return 0


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    kafka = common.add_argument_group("Kafka")
    kafka.add_argument("--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092")
    kafka.add_argument(
        "--kafka-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any librdkafka consumer setting, repeatable; security settings also come from"
        " KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,"
        " KAFKA_SSL_CA_LOCATION",
    )
    kafka.add_argument(
        "--topic",
        default=os.environ.get("FRAUD_AUDIT_TOPIC") or "fraud.audit",
        help="audit topic (default: $FRAUD_AUDIT_TOPIC, else fraud.audit)",
    )
    common.add_argument("--quiet", action="store_true", help="no progress bar (none when not on a TTY)")
    return common


@contextmanager
def _sink(args: argparse.Namespace) -> Iterator[RecordSink]:
    csv_format = args.format == "csv" or (args.format is None and args.output.endswith(".csv"))
    kind = CsvSink if csv_format else ExpandedJsonlSink if args.format == "expanded" else JsonlSink
    with ExitStack() as stack:
        stream = sys.stdout.buffer if args.output == "-" else stack.enter_context(open(args.output, "wb"))
        yield kind(stream, flush_each=args.follow)
        stream.flush()


def _guarded(handler: Handler) -> Handler:
    """Problems a user can fix become one line on stderr and exit code 2, not a traceback."""

    @wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (ReadError, KafkaException, OSError, ValueError) as error:
            print(f"fraud-detector audit {args.audit_command}: {error}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print(f"fraud-detector audit {args.audit_command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run
