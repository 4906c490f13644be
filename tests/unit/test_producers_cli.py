"""fraud-simulate and fraud-replay end to end, writing JSONL (no broker)."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.engine.records import decode_label, decode_transaction
from producers import cli_common, replay_cli, simulate_cli
from producers.sinks import DeliveryReport

SMALL = {"days": 2, "population": {"cards": 100, "terminals": 20}, "fraud_rate": 0.05}


def summary_of(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


def simulate_to_jsonl(directory: Path, transactions: int) -> int:
    """fraud-simulate's exit code for ``transactions`` of the small config, written to ``directory``."""
    config = directory / "small.json"
    config.write_text(json.dumps(SMALL))
    argv = ["--config", str(config), "--transactions", str(transactions)]
    return simulate_cli.main([*argv, "--output", "jsonl", "--output-dir", str(directory)])


def test_simulate_writes_transactions_labels_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    out = tmp_path / "out"
    argv = ["--config", str(config), "--seed", "3", "--output", "jsonl", "--output-dir", str(out)]
    assert simulate_cli.main([*argv, "--truth-file", str(out / "truth.jsonl"), "--quiet"]) == 0
    summary = {k.strip(): v.strip() for k, v in summary_of(capsys.readouterr().out).items()}
    transactions = [
        decode_transaction(line) for line in (out / "transactions.jsonl").read_bytes().splitlines()
    ]
    labels = [decode_label(line) for line in (out / "labels.jsonl").read_bytes().splitlines()]
    truth = [orjson.loads(line) for line in (out / "truth.jsonl").read_bytes().splitlines()]
    assert (
        int(summary["transactions"])
        == int(summary["delivered transactions"])
        == len(transactions)
        == len(truth)
    )
    assert int(summary["labels"]) == int(summary["delivered labels"]) == len(labels)
    assert int(summary["frauds"]) == sum(t["is_fraud"] for t in truth) > 0
    assert summary["failed"] == "0"
    assert [t["transaction_id"] for t in truth] == [tx.transaction_id for tx in transactions]
    assert {t["scenario"] for t in truth if t["is_fraud"]} <= {
        "card_testing",
        "compromised_terminal",
        "account_takeover",
        "high_amount",
    }


def test_simulate_stops_after_the_asked_number_of_transactions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate_to_jsonl(tmp_path, 150) == 0
    assert len((tmp_path / "transactions.jsonl").read_bytes().splitlines()) == 150


def test_print_config_shows_the_preset_with_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_cli.main(["--preset", "drift", "--seed", "9", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["seed"] == 9
    assert [change["param"] for change in config["drift"]] == [
        "scenarios.card_testing.weight",
        "scenarios.account_takeover.weight",
    ]


def test_simulate_rejects_a_bad_config_as_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"population": {"cardz": 1}}))
    with pytest.raises(SystemExit) as exit_info:
        simulate_cli.main(["--config", str(config)])
    assert exit_info.value.code == 2
    assert "config.population: unknown key(s) cardz" in capsys.readouterr().err


HANDBOOK = [
    "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD",
    "0,2018-04-01 00:00:31,596,3156,57.16,0",
    "1,2018-04-01 00:02:10,4961,3412,oops,1",
    "2,2018-04-01 00:07:41,2,1365,146.00,0",
]
MAPPING = [
    *("--map", "transaction_id=TRANSACTION_ID", "--map", "timestamp=TX_DATETIME"),
    *("--map", "customer_id=CUSTOMER_ID", "--map", "terminal_id=TERMINAL_ID", "--map", "amount=TX_AMOUNT"),
    *("--timestamp-format", "%Y-%m-%d %H:%M:%S", "--label-column", "TX_FRAUD", "--label-delay", "7d"),
]


def test_replay_skips_and_counts_bad_records_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "handbook.csv"
    source.write_text("\n".join(HANDBOOK) + "\n")
    argv = [
        str(source),
        *MAPPING,
        "--on-error",
        "skip",
        "--output",
        "jsonl",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert replay_cli.main(argv) == 0
    summary = {k.strip(): v.strip() for k, v in summary_of(capsys.readouterr().out).items()}
    assert summary["transactions"] == summary["labels"] == summary["delivered labels"] == "2"
    assert summary["skipped (bad_amount)"] == "1"
    labels = [decode_label(line) for line in (tmp_path / "o" / "labels.jsonl").read_bytes().splitlines()]
    assert [label.timestamp for label in labels] == ["2018-04-08T00:00:31Z", "2018-04-08T00:07:41Z"]


def test_replay_stops_at_a_bad_record_by_default_with_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "handbook.csv"
    source.write_text("\n".join(HANDBOOK) + "\n")
    assert replay_cli.main([str(source), *MAPPING, "--output", "jsonl", "--output-dir", str(tmp_path)]) == 1
    assert f"{source}:3: bad_amount" in caplog.text
    summary = {k.strip(): v.strip() for k, v in summary_of(capsys.readouterr().out).items()}
    assert summary["delivered transactions"] == "1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--map", "amount"], "expected key=value"),
        (["--map", "amt=TX_AMOUNT"], "cannot map amt"),
        (["--label-delay", "soon"], "--label-delay"),
        (["--rate", "10", "--speed", "2"], "not allowed with"),
    ],
)
def test_replay_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    source = tmp_path / "tx.jsonl"
    source.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        replay_cli.main([str(source), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


class FailingSink:
    def send_transaction(self, transaction: object) -> None:
        pass

    def send_label(self, label: object) -> None:
        pass

    def close(self) -> DeliveryReport:
        report = DeliveryReport()
        report.delivered["transactions"] = 1
        report.failures["broker down"] = 2
        return report


def test_any_failed_delivery_makes_the_exit_code_non_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_common, "make_sink", lambda args: FailingSink())
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    assert simulate_cli.main(["--config", str(config), "--transactions", "3"]) == 1
    summary = {k.strip(): v.strip() for k, v in summary_of(capsys.readouterr().out).items()}
    assert (summary["failed"], summary["failed (broker down)"]) == ("2", "2")


def test_an_unusable_kafka_setting_fails_cleanly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    assert simulate_cli.main(["--config", str(config), "--kafka-config", "no.such.setting=1"]) == 1
    assert "cannot open the output" in caplog.text


@pytest.mark.parametrize("cli", [simulate_cli, replay_cli])
def test_version(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    name = "fraud-simulate" if cli is simulate_cli else "fraud-replay"
    assert capsys.readouterr().out.strip() == f"{name} {version('fraud-detector')}"


def test_the_summary_has_elapsed_time_and_rate_when_not_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate_to_jsonl(tmp_path, 50) == 0
    output = capsys.readouterr()
    assert not output.err.strip(), "no progress bar off a terminal"
    summary = {k.strip(): v.strip() for k, v in summary_of(output.out).items()}
    assert summary["elapsed"].endswith(" s") and float(summary["elapsed"][:-2]) >= 0
    assert summary["rate"].endswith(" events/s") and int(summary["rate"].split()[0].replace(",", "")) > 0
