"""``fraud-detector audit report``: its options, and reading the audit and labels topics or files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from detector.audit.cli_options import add_time_filters, kafka_client
from detector.audit.collection import Labels, collect, read_labels
from detector.audit.offline import read_labels_file, write_report_from_files
from detector.audit.options import ReportOptions
from detector.audit.reader import TopicReader, progress_wanted
from detector.audit.selection import RecordFilter

DEFAULTS = ReportOptions()


def report_options(parser: argparse.ArgumentParser) -> None:
    add_time_filters(parser)
    parser.add_argument("--out", type=Path, required=True, help="directory for report.html and PNGs")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--labels-topic",
        default=os.environ.get("FRAUD_LABELS_TOPIC") or "labels",
        help="topic with the labels (default: $FRAUD_LABELS_TOPIC, else labels)",
    )
    labels.add_argument("--labels-file", type=Path, help="read the labels from this JSONL file instead")
    parser.add_argument(
        "--audit-file",
        type=Path,
        help="report on this audit JSONL file (the output of audit replay --output x.jsonl) instead of"
        " the topic, with no Kafka: labels from --labels-file, or none",
    )
    parser.add_argument("--k", type=int, default=100, help="cards a day for card precision@k (default: 100)")
    parser.add_argument(
        "--min-score-shift",
        type=float,
        default=DEFAULTS.min_score_shift,
        metavar="SHIFT",
        help="list a score-drift event only if the mean score moved by at least SHIFT of its earlier"
        f" value (default: {DEFAULTS.min_score_shift:g}, i.e. {DEFAULTS.min_score_shift * 100:.0f}%%)",
    )
    parser.add_argument(
        "--queue-per-day",
        type=int,
        default=DEFAULTS.queue_per_day,
        metavar="N",
        help=f"alerts a day in the review queue (default: {DEFAULTS.queue_per_day})",
    )
    parser.add_argument(
        "--queue-days",
        type=int,
        default=DEFAULTS.queue_days,
        metavar="N",
        help=f"latest days with alerts in the review queue (default: {DEFAULTS.queue_days})",
    )
    parser.add_argument(
        "--missed-cases",
        type=int,
        default=DEFAULTS.missed_cases,
        metavar="N",
        help=f"missed frauds listed (default: {DEFAULTS.missed_cases})",
    )


def report_command(args: argparse.Namespace) -> int:
    options = ReportOptions(
        min_score_shift=args.min_score_shift,
        queue_per_day=args.queue_per_day,
        queue_days=args.queue_days,
        missed_cases=args.missed_cases,
        audit_topic=None if args.audit_file else args.topic,
    )
    if args.audit_file:
        path = write_report_from_files(
            args.audit_file,
            args.labels_file,
            args.out,
            since=args.since,
            until=args.until,
            k=args.k,
            options=options,
        )
        print(f"report written to {path}")
        return 0
    from detector.audit.report import build_report, write_report  # matplotlib: the report extra

    client = kafka_client(args)
    keep = RecordFilter(since=args.since, until=args.until)
    labels = _labels(args, client)  # first: the frauds' features are kept whole for the missed cases
    with TopicReader(client, args.topic) as reader:
        messages = reader.messages(progress=progress_wanted(args.quiet))
        collection = collect(messages, keep, explain=labels.frauds())
    sources = {
        "audit topic": args.topic,
        "labels": f"file {args.labels_file}" if args.labels_file else f"topic {args.labels_topic}",
        "event time": keep.period(),
    }
    path = write_report(build_report(collection, labels, args.k, options=options), args.out, sources)
    print(f"report written to {path}")
    return 0


def _labels(args: argparse.Namespace, client: dict[str, str]) -> Labels:
    if args.labels_file:
        return read_labels_file(args.labels_file)
    with TopicReader(client, args.labels_topic) as reader:
        return read_labels(m.value for m in reader.messages(progress=progress_wanted(args.quiet)))
