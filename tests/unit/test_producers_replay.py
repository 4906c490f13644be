"""Replay: event-time order across transactions and labels, CSV mapping, and bad records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detector.engine.records import Label, Transaction
from producers.replay import Replay, ReplayError, SourceFormat

HANDBOOK_HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_FRAUD\n"
HANDBOOK_FORMAT = SourceFormat(
    mapping={
        "transaction_id": "TRANSACTION_ID",
        "timestamp": "TX_DATETIME",
        "customer_id": "CUSTOMER_ID",
        "terminal_id": "TERMINAL_ID",
        "amount": "TX_AMOUNT",
    },
    timestamp_format="%Y-%m-%d %H:%M:%S",
)
DAY = 86400.0


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def tx_line(
    transaction_id: str, timestamp: str, customer: str = "c1", amount: float = 10.0, **extra: object
) -> str:
    body = {
        "transaction_id": transaction_id,
        "timestamp": timestamp,
        "customer_id": customer,
        "terminal_id": "m1",
        "amount": amount,
        **extra,
    }
    return orjson.dumps(body).decode()


def label_line(transaction_id: str, timestamp: str, is_fraud: bool = False) -> str:
    return orjson.dumps(
        {"transaction_id": transaction_id, "customer_id": "c1", "is_fraud": is_fraud, "timestamp": timestamp}
    ).decode()


def kinds_and_ids(events: list) -> list[tuple[str, str]]:
    return [("L" if isinstance(e, Label) else "T", e.transaction_id) for e in events]


def assert_event_time_order(events: list) -> None:
    """Transactions and labels each in time order, and no label before a transaction up to its time."""
    for kind in (Transaction, Label):
        times = [e.event_time for e in events if isinstance(e, kind)]
        assert times == sorted(times)
    earliest_later_transaction = float("inf")
    for event in reversed(events):
        if isinstance(event, Label):
            assert event.event_time < earliest_later_transaction
        else:
            earliest_later_transaction = min(earliest_later_transaction, event.event_time)


def test_csv_with_a_column_mapping_a_timestamp_format_and_a_label_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "handbook.csv",
        [
            HANDBOOK_HEADER.strip(),
            "0,2018-04-01 00:00:31,596,3156,57.16,31,0",
            "1,2018-04-01 00:02:10,4961,3412,81.51,130,1",
            "2,2018-04-08 00:00:31,2,1365,146.00,604831,0",
            "3,2018-04-08 00:02:10,4128,8737,64.49,604930,0",
        ],
    )
    replay = Replay(path, transaction_format=HANDBOOK_FORMAT, label_column="TX_FRAUD", label_delay=7 * DAY)
    events = list(replay)
    assert kinds_and_ids(events) == [
        ("T", "0"),
        ("T", "1"),
        ("T", "2"),  # stamped exactly 7 days after transaction 0: its label comes after it
        ("L", "0"),
        ("T", "3"),
        ("L", "1"),  # transaction 3 is at the same second as label 1
        ("L", "2"),
        ("L", "3"),
    ]
    first = events[0]
    assert first.to_dict() == {
        "transaction_id": "0",
        "timestamp": "2018-04-01T00:00:31Z",
        "customer_id": "596",
        "terminal_id": "3156",
        "amount": 57.16,
    }
    label = events[5]
    assert label == Label("1", "4961", True, events[1].event_time + 7 * DAY)
    assert (replay.stats.transactions, replay.stats.labels, sum(replay.stats.skipped.values())) == (4, 4, 0)
    assert_event_time_order(events)


def test_labels_from_a_file_are_merged_in_event_time_order(tmp_path: Path) -> None:
    transactions = write(
        tmp_path / "tx.jsonl",
        [
            tx_line("a", "2026-01-01T00:00:00Z", channel="web"),
            tx_line("b", "2026-01-01T01:00:00Z"),
            "",
            tx_line("c", "2026-01-01T02:00:00Z"),
        ],
    )
    labels = write(
        tmp_path / "labels.jsonl",
        [
            label_line("a", "2026-01-01T00:30:00Z"),
            label_line("b", "2026-01-01T02:00:00Z", is_fraud=True),
            label_line("c", "2026-01-01T05:00:00Z"),
        ],
    )
    events = list(Replay(transactions, labels=labels))
    assert kinds_and_ids(events) == [("T", "a"), ("L", "a"), ("T", "b"), ("T", "c"), ("L", "b"), ("L", "c")]
    assert isinstance(events[0], Transaction)
    assert events[0].extras == {"channel": "web"}
    assert_event_time_order(events)


def test_labels_from_a_csv_file_with_their_own_mapping(tmp_path: Path) -> None:
    transactions = write(tmp_path / "tx.jsonl", [tx_line("a", "2026-01-01T00:00:00Z")])
    labels = write(tmp_path / "labels.csv", ["ID,CUST,FRAUD,AT", "a,c1,1,2026-01-09 00:00:00"])
    label_format = SourceFormat(
        {"transaction_id": "ID", "customer_id": "CUST", "is_fraud": "FRAUD", "timestamp": "AT"},
        "%Y-%m-%d %H:%M:%S",
    )
    events = list(Replay(transactions, labels=labels, label_format=label_format))
    assert events[1] == Label("a", "c1", True, events[0].event_time + 8 * DAY)


def test_a_jsonl_label_column_is_taken_out_of_the_transaction(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.jsonl", [tx_line("a", "2026-01-01T00:00:00Z", fraud=1, channel="pos")])
    transaction, label = list(Replay(path, label_column="fraud"))
    assert isinstance(transaction, Transaction) and isinstance(label, Label)
    assert transaction.extras == {"channel": "pos"}
    assert label.is_fraud is True


BAD_JSONL = [
    tx_line("a", "2026-01-01T00:00:00Z"),
    "{not json",
    tx_line("b", "2026-01-01T01:00:00Z", amount=-3),
    '{"transaction_id": "c"}',
    tx_line("d", "2026-01-01T02:00:00Z"),
]


def test_a_bad_record_stops_the_replay_with_its_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.jsonl", BAD_JSONL)
    replay = Replay(path)
    seen: list[Transaction | Label] = []
    with pytest.raises(ReplayError) as caught:
        seen.extend(replay)
    assert str(caught.value).startswith(f"{path}:2: bad_json:")
    assert (caught.value.line, caught.value.reason) == (2, "bad_json")
    assert [e.transaction_id for e in seen] == ["a"]


def test_with_skip_bad_records_are_counted_by_reason_and_logged_with_their_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "tx.jsonl", BAD_JSONL)
    replay = Replay(path, on_error="skip")
    assert [e.transaction_id for e in replay] == ["a", "d"]
    assert replay.stats.skipped == {"bad_json": 1, "bad_amount": 1, "missing_field": 1}
    assert replay.stats.transactions == 2
    assert f"{path}:3: bad_amount" in caplog.text
    assert f"{path}:4: missing_field" in caplog.text


def test_bad_csv_lines_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "handbook.csv",
        [
            HANDBOOK_HEADER.strip(),
            "0,2018-04-01 00:00:31,596,3156,57.16,31,0",
            "1,2018-04-01 00:02:10,4961,3412,lots,130,0",
            "2,2018-04-01 00:03:00,4961,3412,5.00",
            "3,01/04/2018 00:04:00,4961,3412,5.00,240,0",
            "4,2018-04-01 00:05:00,4961,3412,5.00,300,maybe",
            "5,2018-04-01 00:06:00,4961,3412,5.00,360,0",
        ],
    )
    replay = Replay(path, transaction_format=HANDBOOK_FORMAT, label_column="TX_FRAUD", on_error="skip")
    assert [e.transaction_id for e in replay if isinstance(e, Transaction)] == ["0", "5"]
    assert replay.stats.skipped == {"bad_amount": 1, "bad_csv": 1, "bad_timestamp": 1, "bad_label": 1}
    with pytest.raises(ReplayError, match=r"handbook\.csv:3: bad_amount: 'amount' must be a number"):
        list(Replay(path, transaction_format=HANDBOOK_FORMAT, label_column="TX_FRAUD"))


UNSORTED = [
    tx_line("a", "2026-01-01T00:00:00Z"),
    tx_line("b", "2026-01-01T00:10:00Z"),
    tx_line("c", "2026-01-01T00:05:00Z"),
    tx_line("d", "2026-01-01T00:10:00Z"),
    tx_line("e", "2026-01-01T00:20:00Z"),
]


def test_an_unsorted_input_is_rejected_at_the_first_record_out_of_order(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.jsonl", UNSORTED)
    with pytest.raises(
        ReplayError, match=r"tx\.jsonl:3: out_of_order: 2026-01-01T00:05:00Z is more than 0s before "
    ):
        list(Replay(path))
    skipping = Replay(path, on_error="skip")
    assert [e.transaction_id for e in skipping] == ["a", "b", "d", "e"]
    assert skipping.stats.skipped == {"out_of_order": 1}


def test_bounded_disorder_is_put_back_in_order(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.jsonl", UNSORTED)
    assert [e.transaction_id for e in Replay(path, max_disorder=300)] == ["a", "c", "b", "d", "e"]
    with pytest.raises(ReplayError, match="out_of_order"):
        list(Replay(path, max_disorder=299))


def test_an_unsorted_label_file_is_rejected_too(tmp_path: Path) -> None:
    transactions = write(tmp_path / "tx.jsonl", [tx_line("a", "2026-01-01T00:00:00Z")])
    labels = write(
        tmp_path / "labels.jsonl",
        [label_line("a", "2026-01-03T00:00:00Z"), label_line("a", "2026-01-02T00:00:00Z")],
    )
    with pytest.raises(ReplayError, match=r"labels\.jsonl:2: out_of_order"):
        list(Replay(transactions, labels=labels))


def test_a_csv_without_a_mapped_column_is_rejected_before_any_record(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.csv", ["TRANSACTION_ID,TX_DATETIME", "0,2018-04-01 00:00:31"])
    with pytest.raises(ReplayError, match=r"tx\.csv:1: missing_column: no column CUSTOMER_ID, TERMINAL_ID"):
        list(Replay(path, transaction_format=HANDBOOK_FORMAT, on_error="skip"))


def test_a_mapping_names_contract_fields_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot map amt"):
        Replay(tmp_path / "tx.csv", transaction_format=SourceFormat({"amt": "TX_AMOUNT"}))
    with pytest.raises(ValueError, match="not both"):
        Replay(tmp_path / "tx.csv", labels=tmp_path / "l.jsonl", label_column="TX_FRAUD")
