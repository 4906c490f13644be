"""Selecting and exporting audit records, and the ``audit`` command line, without a broker."""

from __future__ import annotations

import argparse
import csv
import io
from datetime import UTC, datetime

import orjson
import pytest

from detector.audit.cli import register
from detector.audit.export import CSV_COLUMNS, CsvSink, JsonlSink, export
from detector.audit.reader import TopicMessage
from detector.audit.records import pseudonymise
from detector.audit.selection import RecordFilter, customer_ids

JAN2 = datetime(2026, 1, 2, tzinfo=UTC).timestamp()


def decision(tx: str, customer: str, outcome: str, when: str, generation: int = 1) -> dict:
    return {
        "record_type": "decision",
        "transaction_id": tx,
        "customer_id": customer,
        "decision": outcome,
        "event_time": when,
        "score": 0.5,
        "reason_codes": ["score:review", "feature:amount"],
        "features": {"amount": 12.5},
        "model": {"kind": "logistic_regression", "generation": generation},
        "chain": {"partition": 0, "seq": 0, "prev_hash": "0" * 64, "hash": "ab" * 32},
    }


RECORDS = [
    decision("t1", "c1", "approve", "2026-01-01T10:00:00Z"),
    decision("t2", "c2", "block", "2026-01-01T23:59:59Z"),
    decision("t3", "c1", "review", "2026-01-02T00:00:00Z", generation=2),
    {"record_type": "model_swapped", "event_time": "2026-01-02T01:00:00Z", "model": {"generation": 2}},
    {"record_type": "rejected", "reason": "bad_json"},
]


def kept(keep: RecordFilter) -> list[str]:
    return [r.get("transaction_id", r["record_type"]) for r in RECORDS if keep.matches(r)]


def test_each_filter_and_their_combination() -> None:
    assert kept(RecordFilter()) == ["t1", "t2", "t3", "model_swapped", "rejected"]
    assert kept(RecordFilter(customers=frozenset({"c1"}))) == ["t1", "t3"]
    assert kept(RecordFilter(decisions=frozenset({"block", "review"}))) == ["t2", "t3"]
    assert kept(RecordFilter(transaction_ids=frozenset({"t2"}))) == ["t2"]
    assert kept(RecordFilter(record_types=frozenset({"model_swapped"}))) == ["model_swapped"]
    assert kept(RecordFilter(generations=frozenset({2}))) == ["t3", "model_swapped"]
    # Half open on event time; a record without one (rejected input) is outside any window.
    assert kept(RecordFilter(since=JAN2)) == ["t3", "model_swapped"]
    assert kept(RecordFilter(until=JAN2)) == ["t1", "t2"]
    assert kept(RecordFilter(customers=frozenset({"c1"}), until=JAN2)) == ["t1"]


def test_customer_ids_also_match_their_pseudonyms() -> None:
    assert customer_ids(["c1"], None) == {"c1"}
    assert customer_ids(["c1"], b"key") == {"c1", pseudonymise("c1", b"key")}


def messages() -> list[TopicMessage]:
    values = [orjson.dumps(r) for r in RECORDS]
    return [TopicMessage(1, 10 + i, None, None, v) for i, v in enumerate([*values, b"\x00garbage"])]


def test_jsonl_export_is_the_original_bytes() -> None:
    out = io.BytesIO()
    counts = export(messages(), RecordFilter(decisions=frozenset({"block"})), JsonlSink(out))
    assert out.getvalue() == orjson.dumps(RECORDS[1]) + b"\n"
    assert (counts.read, counts.written, counts.unreadable) == (6, 1, 1)


def test_csv_export_has_a_column_per_field_and_nested_values_as_json() -> None:
    out = io.BytesIO()
    export(messages(), RecordFilter(customers=frozenset({"c1"})), CsvSink(out))
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["audit_partition"], r["audit_offset"], r["transaction_id"]) for r in rows] == [
        ("1", "10", "t1"),
        ("1", "12", "t3"),
    ]
    assert orjson.loads(rows[0]["reason_codes"]) == ["score:review", "feature:amount"]
    assert orjson.loads(rows[1]["features"]) == {"amount": 12.5}
    assert (rows[1]["model_generation"], rows[1]["chain_seq"], rows[1]["detail"]) == ("2", "0", "")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fraud-detector")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_audit_commands_parse_with_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_AUDIT_TOPIC", "audit.prod")
    args = parse(["audit", "replay", "--customer", "c1", "--customer", "c2", "--since", "2026-01-02"])
    assert (args.topic, args.customer, args.since, args.follow) == ("audit.prod", ["c1", "c2"], JAN2, False)
    assert callable(args.func)
    verify = parse(["audit", "verify", "--topic", "t", "--hmac-key-env", "MY_KEY"])
    assert (verify.topic, verify.hmac_key_env, verify.head) == ("t", "MY_KEY", None)
    report = parse(["audit", "report", "--out", "r", "--until", "2026-01-02T01:00:00+01:00"])
    assert (report.labels_topic, report.k, report.until) == ("labels", 100, JAN2)
    assert len({args.func, verify.func, report.func}) == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "replay", "--since", "yesterday"],
        ["audit", "replay", "--since", "2026-01-02T00:00:00"],  # no offset: ambiguous
        ["audit", "report"],  # --out is required
        ["audit", "report", "--out", "r", "--labels-topic", "l", "--labels-file", "f"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2


def test_unusable_kafka_settings_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["audit", "verify", "--kafka-config", "no-equals-sign"])
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("fraud-detector audit verify: expected key=value")
