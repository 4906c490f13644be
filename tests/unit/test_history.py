"""History files: one reader and one set of input options for fraud-replay and the backtest."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from detector.backtest.cli import build_parser as backtest_parser
from detector.engine.records import Label, Transaction
from detector.history.reading import Replay, ReplayError
from producers.replay_cli import build_parser as replay_parser


def option_strings(parser: argparse.ArgumentParser, group: str) -> dict[str, tuple[object, object]]:
    """Each option of the group, with its type and default."""
    (found,) = [g for g in parser._action_groups if g.title == group]
    return {
        option: (action.type, action.default)
        for action in found._group_actions
        for option in action.option_strings
    }


def test_fraud_replay_and_the_backtest_read_with_the_same_options() -> None:
    replay = option_strings(replay_parser(), "input")
    backtest = option_strings(backtest_parser(), "input")
    assert replay == {option: value for option, value in backtest.items() if option != "--events"}
    assert {"--map", "--label-column", "--label-delay", "--max-disorder", "--on-error"} <= replay.keys()


def test_fraud_replay_reads_through_the_products_reader() -> None:
    from producers import replay

    assert replay.Replay is Replay


def tx(transaction_id: str, time: float, customer: str = "c1") -> Transaction:
    return Transaction(transaction_id, time, customer, "m1", 10.0)


def test_a_merged_file_gives_the_same_events_as_the_two_files(tmp_path: Path) -> None:
    transactions = [tx("a", 1.7e9), tx("b", 1.7e9 + 60), tx("c", 1.7e9 + 120)]
    labels = [Label("a", "c1", True, 1.7e9 + 90), Label("b", "c1", False, 1.7e9 + 120)]
    (tmp_path / "tx.jsonl").write_bytes(b"".join(t.to_json() + b"\n" for t in transactions))
    (tmp_path / "l.jsonl").write_bytes(b"".join(label.to_json() + b"\n" for label in labels))
    separate = list(Replay(tmp_path / "tx.jsonl", labels=tmp_path / "l.jsonl"))
    (tmp_path / "merged.jsonl").write_bytes(b"".join(event.to_json() + b"\n" for event in separate))

    merged = list(Replay(tmp_path / "merged.jsonl", merged=True))

    assert merged == separate
    assert [type(event).__name__[0] for event in merged] == ["T", "T", "L", "T", "L"]


def test_a_merged_file_must_be_in_time_order_and_holds_its_own_labels(tmp_path: Path) -> None:
    path = tmp_path / "merged.jsonl"
    path.write_bytes(tx("b", 1.7e9 + 60).to_json() + b"\n" + Label("a", "c1", True, 1.7e9).to_json() + b"\n")
    with pytest.raises(ReplayError, match=r"merged.jsonl:2: out_of_order"):
        list(Replay(path, merged=True))
    with pytest.raises(ValueError, match="holds its own labels"):
        Replay(path, merged=True, label_column="fraud")
    with pytest.raises(ValueError, match="JSONL"):
        Replay(tmp_path / "merged.csv", merged=True)
