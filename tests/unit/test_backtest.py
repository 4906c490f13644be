"""fraud-detector backtest: routing, configurations, metrics, rules replay, outputs and errors."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest

from detector.audit.chain import GENESIS, verify_record
from detector.backtest.cli import main as backtest
from detector.backtest.metrics import OUTCOME_CODES, Period, Results, periods, quality
from detector.backtest.routing import partition_for
from detector.backtest.variants import BacktestError, build_variants, parse_rule
from detector.cli import main as fraud_detector
from detector.engine.records import Label, Transaction
from tests.streams import short_label_stream

HOUR, DAY = 3600.0, 86400.0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("history")
    items = short_label_stream(4_000, seed=3, cards=400, terminals=60, fraud_delay=2 * HOUR)
    transactions, labels = directory / "transactions.jsonl", directory / "labels.jsonl"
    transactions.write_bytes(b"".join(i.to_json() + b"\n" for i in items if isinstance(i, Transaction)))
    labels.write_bytes(b"".join(i.to_json() + b"\n" for i in items if isinstance(i, Label)))
    return transactions, labels


def fill(text: str, paths: dict[str, Path]) -> str:
    """``text`` with each ``{name}`` replaced by its path."""
    for name, path in paths.items():
        text = text.replace(f"{{{name}}}", str(path))
    return text


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_routing_is_librdkafkas_consistent_partitioner() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the standard CRC-32, as librdkafka's rd_crc32
    assert partition_for("123456789", 1000) == 0xCBF43926 % 1000
    spread = {partition_for(f"C{n}", 4) for n in range(100)}
    assert spread == {0, 1, 2, 3}


def test_configurations_from_models_with_baselines_and_rules(tmp_path: Path) -> None:
    config = tmp_path / "tight.json"
    config.write_text('{"policy": {"review_threshold": 0.3}}')
    rule = parse_rule('{"name": "big", "field": "amount", "op": ">", "value": 500, "action": "review"}')
    variants = build_variants([config], ["logistic_regression", "logistic_regression"], True, [rule])
    assert [v.name for v in variants] == [
        "tight",
        "tight-drift-off",
        "logistic_regression",
        "logistic_regression-drift-off",
        "logistic_regression-2",
        "logistic_regression-drift-off-2",
    ]
    assert variants[0].config.policy.review_threshold == 0.3
    assert [v.config.drift.enabled for v in variants[:2]] == [True, False]
    assert all(v.config.policy.rules == (rule,) for v in variants)
    assert [v.name for v in build_variants([], [], False)] == ["logistic_regression"]
    with pytest.raises(BacktestError, match="more than one rule named big"):
        build_variants([], ["logistic_regression"], False, [rule, rule])


def test_quality_of_a_known_ranking() -> None:
    truth = {
        "times": np.array([0.0, 10.0, 20.0, DAY + 5]),
        "amounts": np.array([100.0, 5.0, 7.0, 50.0]),
        "cards": np.array([0, 1, 2, 0]),
        "labels": np.array([1, 0, -1, 1], dtype=np.int8),
    }
    approve, review, block = (OUTCOME_CODES[name] for name in ("approve", "review", "block"))
    results = Results(
        np.array([0.95, 0.2, 0.6, 0.1]), np.array([block, approve, review, approve], dtype=np.int8)
    )
    row = quality(truth, results, np.ones(4, dtype=bool), k=1)
    assert row["transactions"] == 4 and row["frauds"] == 2
    assert row["auc"] == 0.5  # the labelled: fraud 0.95 and 0.1 against legitimate 0.2
    assert row["card_prec@1"] == 1.0 and row["best_card_prec@1"] == 1.0
    assert row["recall_review"] == 0.5 and row["recall_block"] == 0.5
    assert row["alerts/day"] == 1.0 and row["blocks/day"] == 0.5
    assert (row["fraud_caught"], row["fraud_missed"]) == (100.0, 50.0)


def test_periods_cover_the_span_then_each_week() -> None:
    times = np.array([DAY + 100, 15 * DAY])
    chosen = periods(times, None, None, weekly=True)
    assert [p.name for p in chosen] == ["all", "week 1", "week 2", "week 3"]
    assert chosen[1] == Period("week 1", DAY + 100, 8 * DAY)
    assert chosen[-1].end == 15 * DAY + 1
    assert periods(times, 2 * DAY, 3 * DAY, weekly=False) == [Period("all", 2 * DAY, 3 * DAY)]


def test_outputs_routing_audit_chains_and_a_replayed_rule(history: tuple[Path, Path], tmp_path: Path) -> None:
    transactions, labels = history
    rule = '{"name": "big", "field": "amount", "op": ">", "value": 150, "action": "review"}'
    out = tmp_path / "bt"
    argv = [
        str(transactions),
        "--labels",
        str(labels),
        "--partitions",
        "3",
        "--rule",
        rule,
        "--out",
        str(out),
    ]
    assert fraud_detector(["backtest", *argv, "--weekly", "--quiet"]) == 0

    assert (out / "logistic_regression" / "report" / "report.html").is_file()
    assert read_jsonl(out / "labels.jsonl") == read_jsonl(labels)
    scored = read_jsonl(out / "logistic_regression" / "scores.jsonl")
    sent = read_jsonl(transactions)
    # Decided in each partition's order; a partition waiting at the epoch barrier decides later.
    route = {tx["transaction_id"]: partition_for(tx["customer_id"], 3) for tx in sent}
    for partition in range(3):
        assert [line["transaction_id"] for line in scored if route[line["transaction_id"]] == partition] == [
            tx["transaction_id"] for tx in sent if route[tx["transaction_id"]] == partition
        ]
    assert len(scored) == len(sent)
    audit = read_jsonl(out / "logistic_regression" / "audit.jsonl")
    heads: dict[int, tuple[int, str]] = {}
    customers = {tx["transaction_id"]: tx["customer_id"] for tx in sent}
    for record in audit:
        partition = record["chain"]["partition"]
        seq, previous = heads.get(partition, (0, GENESIS))
        assert verify_record(record, seq, previous) is None
        heads[partition] = (seq + 1, record["chain"]["hash"])
        if record["record_type"] == "decision":
            assert partition == partition_for(customers[record["transaction_id"]], 3)
    assert set(heads) == {0, 1, 2}

    document = orjson.loads((out / "comparison.json").read_bytes())
    assert document["transactions"] == len(sent)
    assert [p["period"] for p in document["periods"]][:2] == ["all", "week 1"]
    (row,) = document["rules"]
    fired = [line for line in scored if "rule:big" in line["reason_codes"]]
    assert row["fired"] == len(fired) == sum(tx["amount"] > 150 for tx in sent) > 0
    final = {label["transaction_id"]: label["is_fraud"] for label in read_jsonl(labels)}
    judged = [final[line["transaction_id"]] for line in fired if line["transaction_id"] in final]
    assert row["precision"] == pytest.approx(sum(judged) / len(judged))
    missed = [line for line in fired if final.get(line["transaction_id"]) and line["score"] < 0.5]
    assert row["frauds_missed_by_score"] == len(missed)


def amount_tells_fraud(path: Path, transactions: int = 3_000) -> tuple[Path, Path]:
    """A stream where a fraud is a large amount and every label comes an hour later: a model that
    learns finds it, one that cannot stays at its prior."""
    rng = np.random.default_rng(5)
    fraud = rng.random(transactions) < 0.03
    amounts = np.where(fraud, rng.uniform(500, 1000, transactions), rng.lognormal(3, 0.5, transactions))
    times = 1.7e9 + np.arange(transactions) * 60.0
    sent = [
        Transaction(f"t{n}", times[n], f"c{n % 300}", f"m{n % 40}", round(float(amounts[n]), 2))
        for n in range(transactions)
    ]
    labels = [
        Label(t.transaction_id, t.customer_id, bool(f), t.event_time + HOUR)
        for t, f in zip(sent, fraud, strict=True)
    ]
    (path / "tx.jsonl").write_bytes(b"".join(t.to_json() + b"\n" for t in sent))
    (path / "labels.jsonl").write_bytes(b"".join(label.to_json() + b"\n" for label in labels))
    return path / "tx.jsonl", path / "labels.jsonl"


def test_a_config_that_cannot_learn_ranks_below_one_that_can(tmp_path: Path) -> None:
    transactions, labels = amount_tells_fraud(tmp_path)
    configs = {"blind": 1e-12, "learning": 0.01}  # learning rates: of nothing, and of a quick learner
    for name, rate in configs.items():
        (tmp_path / f"{name}.json").write_text(f'{{"model": {{"learning_rate": {rate}}}}}')
    out = tmp_path / "bt"
    argv = [
        str(transactions),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--quiet",
        "--k",
        "5",
        "--no-report",
    ]
    for name in configs:
        argv += ["--config", str(tmp_path / f"{name}.json")]
    assert backtest(argv) == 0
    (whole, *_) = orjson.loads((out / "comparison.json").read_bytes())["periods"]
    rows = {row["config"]: row for row in whole["rows"]}
    learning, blind = rows["learning"], rows["blind"]
    assert learning["auc"] > 0.9
    assert blind["auc"] < 0.6
    assert learning["avg_precision"] > blind["avg_precision"]
    assert learning["card_prec@5"] > blind["card_prec@5"]
    assert learning["recall_review"] > blind["recall_review"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "svm"], "--model 'svm': unknown model kind"),
        (["--config", "{missing}"], "--config {missing}: No such file"),
        (["--config", "{bad_json}"], "--config {bad_json}: unexpected character"),
        (["--config", "{unknown_setting}"], "invalid engine config: model.knd: unknown setting"),
        (
            ["--rule", '{"name": "r", "field": "amount", "op": "~", "value": 1, "action": "review"}'],
            "op must be",
        ),
        (["--rule", "not json"], "--rule 'not json': not JSON"),
        (["--partitions", "0"], "--partitions must be at least 1"),
        (["--from", "yesterday"], "'--from' is not RFC 3339"),
        (["--label-delay", "soon"], "not a duration: 'soon'"),
        (["--events", "{transactions}"], "a transaction file or --events, not both"),
        (["--labels", "{missing}"], "no such file"),
    ],
)
def test_every_mistake_is_one_line_and_exit_2(
    extra: list[str],
    message: str,
    history: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "unknown.json").write_text('{"model": {"knd": "x"}}')
    paths = {
        "missing": tmp_path / "missing.json",
        "bad_json": tmp_path / "bad.json",
        "unknown_setting": tmp_path / "unknown.json",
        "transactions": history[0],
    }
    argv = [str(history[0]), *(fill(arg, paths) for arg in extra), "--out", str(tmp_path / "o"), "--quiet"]
    assert backtest(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert fill(message, paths) in error


def test_a_bad_record_names_its_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tx.jsonl"
    good = Transaction("a", 1.7e9, "c1", "m1", 10.0).to_json()
    path.write_bytes(good + b"\n" + b'{"transaction_id": "b"}\n')
    assert backtest([str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert f"{path}:2: missing_field" in capsys.readouterr().err
    assert backtest([str(path), "--on-error", "skip", "--out", str(tmp_path / "o"), "--quiet"]) == 0
