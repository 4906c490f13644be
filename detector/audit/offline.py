"""The report from files, with no Kafka: an exported audit JSONL and, optionally, a labels JSONL.

An export (``audit replay --output x.jsonl``) is the audit records byte for byte, one a line, so
each line is read as the message it was. The partition comes from the record's chain (0 for a
record without one); a file has no Kafka write times, so the report shows no end-to-end lag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detector.audit.collection import Labels, collect, read_labels
from detector.audit.options import ReportOptions
from detector.audit.reader import TopicMessage
from detector.audit.records import chain_fields, decode_record
from detector.audit.selection import RecordFilter


def file_messages(path: Path) -> Iterator[TopicMessage]:
    """Each non-empty line of an audit JSONL file as the message it was read from."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines):
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield TopicMessage(_partition(value), number, None, None, value)


def read_labels_file(path: Path) -> Labels:
    """Labels from a JSONL file, one label a line as on the labels topic."""
    with path.open("rb") as lines:
        return read_labels(line for line in lines if line.strip())


def write_report_from_files(
    audit_file: Path,
    labels_file: Path | None,
    out: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    k: int = 100,
    options: ReportOptions | None = None,
) -> Path:
    """Build the report of ``audit_file`` (labels from ``labels_file``, or none) into ``out``."""
    from detector.audit.report import build_report, write_report  # matplotlib: the report extra

    keep = RecordFilter(since=since, until=until)
    labels = read_labels_file(labels_file) if labels_file is not None else Labels()
    collection = collect(file_messages(audit_file), keep, explain=labels.frauds())
    sources = {
        "audit file": str(audit_file),
        "labels": f"file {labels_file}" if labels_file is not None else "none: no precision figures",
        "event time": keep.period(),
    }
    return write_report(build_report(collection, labels, k, options=options), out, sources)


def _partition(value: bytes) -> int:
    chain = chain_fields(decode_record(value))
    partition = chain["partition"] if chain is not None else 0
    return partition if type(partition) is int else 0
