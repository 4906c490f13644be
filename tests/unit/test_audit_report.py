"""The report's numbers on a small case worked out by hand, and a page whose figures really open.

Three days, four cards (A-D), eleven decisions, two of them never labelled. Expected values are
computed in the comments from the definitions, not with the code under test.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from PIL import Image

from detector.audit.chain import ChainState
from detector.audit.cli import register
from detector.audit.collection import collect, read_labels
from detector.audit.findings import material_events, replay_command
from detector.audit.offline import file_messages, write_report_from_files
from detector.audit.options import ReportOptions
from detector.audit.quality import REALTIME_MAX_MEDIAN_LAG_S, generation_steps, write_lag
from detector.audit.reader import TopicMessage
from detector.audit.reasons import sentence
from detector.audit.report import LATENCY_PNG, SCORES_PNG, TIMELINE_PNG, Report, build_report, write_report
from detector.audit.selection import RecordFilter
from detector.engine.records import Label, format_timestamp

DAY1 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0
# (transaction, day index, card, score, decision, label: True fraud / False legitimate / None unlabelled)
DECISIONS = [
    ("t1", 0, "A", 0.95, "block", True),
    ("t2", 0, "B", 0.60, "review", False),
    ("t3", 0, "C", 0.10, "approve", False),
    ("t4", 0, "D", 0.55, "review", None),
    ("t5", 1, "A", 0.20, "approve", True),
    ("t6", 1, "B", 0.80, "block", True),
    ("t7", 1, "C", 0.70, "review", False),
    ("t8", 1, "D", 0.30, "approve", False),
    ("t9", 2, "A", 0.90, "block", None),
    ("t10", 2, "B", 0.40, "approve", False),
    ("t11", 2, "C", 0.10, "approve", False),
]
K = 2  # card precision@2: the day's two highest-scoring cards
# Reason codes given; decisions not named here have none. The rule fires on t6 (fraud) and t7 (legit).
REASONS = {
    "t1": ("score:block", "feature:amount"),
    "t2": ("score:review", "feature:amount"),
    "t4": ("score:review",),
    "t6": ("rule:night_owl", "score:block"),
    "t7": ("rule:night_owl", "score:review"),
    "t9": ("score:block",),
}


def decision(n: int) -> dict:
    """The audit record of ``DECISIONS[n]``, an hour after the previous one of its day."""
    tx, day, card, score, outcome, _ = DECISIONS[n]
    return {
        "record_type": "decision",
        "schema": 1,
        "transaction_id": tx,
        "event_time": format_timestamp(DAY1 + day * 86400 + (n + 1) * HOUR),
        "customer_id": card,
        "decision": outcome,
        "score": score,
        "thresholds": {"review": 0.5, "block": 0.9},
        "model": {"kind": "logistic_regression", "generation": 1 if day == 0 else 2},
        "processing_ms": float(n + 1),  # 1 .. 11 ms
        "amount": 10.0 * (n + 1),  # 10 .. 110
        "reason_codes": list(REASONS.get(tx, ())),
        "features": {"amount": 10.0 * (n + 1), "card_count_1h": float(n % 3)},
    }


def swap_event() -> dict:
    return {
        "record_type": "model_swapped",
        "schema": 1,
        "event_time": format_timestamp(DAY1 + 86400 + 0.5 * HOUR),
        "model": {"kind": "logistic_regression", "generation": 2},
        "detail": {"auc_gain": 0.05},
    }


def messages(lag_s: float = 0.2) -> list[TopicMessage]:
    """Everything in partition 0, stamped by Kafka ``lag_s`` after the event time."""
    records = [decision(n) for n in range(len(DECISIONS))]
    records.insert(4, swap_event())
    records.append({"record_type": "rejected", "schema": 1, "reason": "bad_json"})  # no event time
    return [
        TopicMessage(0, offset, round(1000 * (_time(record) + lag_s)), b"k", orjson.dumps(record))
        for offset, record in enumerate(records)
    ] + [TopicMessage(0, 99, None, None, b"not json")]


def _time(record: dict) -> float:
    return datetime.fromisoformat(record["event_time"]).timestamp() if "event_time" in record else DAY1


def labels() -> list[bytes]:
    values = [
        Label(tx, card, fraud, DAY1 + 10 * 86400).to_json()
        for tx, _, card, _, _, fraud in DECISIONS
        if fraud is not None
    ]
    # An earlier, wrong label for t1 arriving last: the later label time wins, not the arrival order.
    values.append(Label("t1", "A", False, DAY1 + 5 * 86400).to_json())
    values.append(b'{"transaction_id": "t2"}')  # unusable
    return values


def test_daily_numbers_match_a_hand_computation() -> None:
    report = build_report(collect(messages(), RecordFilter()), read_labels(labels()), k=K)
    day1, day2, day3 = report.days
    assert [d.day for d in report.days] == [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
    # Day 1: alerts t1 (block), t2, t4 (review); t4 unlabelled. Labelled alerts t1 (fraud), t2.
    assert (day1.transactions, day1.reviews, day1.blocks, day1.labelled, day1.frauds) == (4, 2, 1, 3, 1)
    assert (day1.labelled_alerts, day1.fraud_alerts, day1.alert_precision) == (2, 1, 0.5)
    # Top 2 labelled cards: A 0.95 (fraud), B 0.60 -> 1/2. Ranking F, L, L -> AP 1.
    assert (day1.card_precision, day1.average_precision) == (0.5, 1.0)
    # Day 2: alerts t6 (block, fraud), t7 (review, legit); top cards B 0.8 (fraud), C 0.7 -> 1/2;
    # ranking F (.8), L (.7), L (.3), F (.2): AP = (1/1 + 2/4) / 2.
    assert (day2.alerts, day2.labelled_alerts, day2.fraud_alerts, day2.alert_precision) == (2, 2, 1, 0.5)
    assert (day2.card_precision, day2.average_precision) == (0.5, 0.75)
    # Day 3: the only alert (t9) is unlabelled; no fraud among the labelled; top cards B, C -> 0.
    assert (day3.alerts, day3.labelled, day3.labelled_alerts) == (1, 2, 0)
    assert math.isnan(day3.alert_precision) and math.isnan(day3.average_precision)
    assert day3.card_precision == 0.0

    overall = report.overall
    assert (overall.transactions, overall.labelled, overall.frauds, overall.alerts) == (11, 9, 3, 6)
    assert overall.alert_precision == 2 / 4
    assert overall.card_precision == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    # All labelled, by score: .95 F, .8 F, .7, .6, .4, .3, .2 F, .1, .1 -> (1 + 1 + 3/7) / 3.
    assert overall.average_precision == pytest.approx((1 + 1 + 3 / 7) / 3)
    assert report.labels.invalid == 1
    assert report.collection.unreadable == 1
    assert report.collection.record_types == {"decision": 11, "model_swapped": 1, "rejected": 1}


def test_score_histogram_latency_and_generations() -> None:
    report = build_report(collect(messages(), RecordFilter()), read_labels(labels()), k=K)
    histogram = report.histogram
    assert len(histogram.edges) == 21 and histogram.edges[0] == 0 and histogram.edges[-1] == 1
    # Frauds scored 0.95, 0.80, 0.20; legitimate 0.60, 0.10, 0.70, 0.30, 0.40, 0.10.
    assert {i: int(n) for i, n in enumerate(histogram.fraud) if n} == {19: 1, 16: 1, 4: 1}
    assert {i: int(n) for i, n in enumerate(histogram.legitimate) if n} == {12: 1, 2: 2, 14: 1, 6: 1, 8: 1}
    assert report.processing is not None
    assert (report.processing.count, report.processing.p50, report.processing.max) == (11, 6.0, 11.0)
    steps = generation_steps(report.joined)
    assert [g for _, g in steps[0]] == [1, 2, 2]
    assert steps[0][1][0] == DAY1 + 86400 + 5 * HOUR  # first generation-2 decision (t5)
    assert [(e.kind, e.generation) for e in report.collection.events] == [("model_swapped", 2)]


def test_event_to_write_lag_is_a_latency_only_when_event_times_are_real_time() -> None:
    live = write_lag(build_report(collect(messages(0.25), RecordFilter()), read_labels([])).joined)
    assert live is not None and live.realtime and live.summary.p50 == pytest.approx(0.25, abs=1e-3)
    replayed = write_lag(build_report(collect(messages(400 * 86400), RecordFilter()), read_labels([])).joined)
    assert replayed is not None and not replayed.realtime
    assert replayed.summary.p50 > REALTIME_MAX_MEDIAN_LAG_S


def test_an_event_time_window_keeps_only_its_days() -> None:
    keep = RecordFilter(since=DAY1 + 86400, until=DAY1 + 2 * 86400)
    report = build_report(collect(messages(), keep), read_labels(labels()), k=K)
    assert [d.day for d in report.days] == [date(2026, 3, 2)]
    assert report.overall.transactions == 4
    assert report.collection.record_types == {"decision": 4, "model_swapped": 1}


def test_page_has_the_tables_and_figures_that_open(tmp_path: Path) -> None:
    report = build_report(collect(messages(), RecordFilter()), read_labels(labels()), k=K)
    page = write_report(report, tmp_path / "report", {"audit topic": "fraud.audit", "labels": "file x"})
    text = page.read_text()
    assert "unlabelled" in text and "fraud.audit" in text
    assert "<td>2026-03-02</td><td>4</td><td>1</td><td>1</td><td>4 (100.0%)</td>" in text
    assert "is not a latency" not in text  # Kafka stamped 0.2 s after event time: real time
    images = re.findall(r'<img src="([^"]+)"', text)
    assert sorted(images) == sorted([TIMELINE_PNG, SCORES_PNG, LATENCY_PNG])
    for name in images:
        with Image.open(page.parent / name) as image:
            image.load()
            assert image.format == "PNG"
            assert image.width >= 800 and image.height >= 400
            colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
        assert colours is not None and len(colours) > 20  # drawn, not a blank canvas
    assert sorted(p.name for p in page.parent.iterdir()) == sorted([*images, "report.html"])


def test_a_report_without_decisions_says_so(tmp_path: Path) -> None:
    report = build_report(collect([], RecordFilter()), read_labels([]))
    text = write_report(report, tmp_path, {"audit topic": "empty"}).read_text()
    assert "No decisions matched" in text
    assert not list(tmp_path.glob("*.png"))


def audit_file(path: Path) -> Path:
    """The records of :func:`messages` as ``audit replay --output`` writes them: one a line, chained
    for partition 3."""
    chain = ChainState(partition=3)
    lines = [
        chain.seal_encoded(orjson.loads(m.value))
        for m in messages()
        if m.value is not None and m.value != b"not json"
    ]
    path.write_bytes(b"".join(line + b"\n" for line in [*lines, b"not json"]))
    return path


def test_an_exported_audit_file_reads_as_the_topic_it_came_from(tmp_path: Path) -> None:
    collection = collect(file_messages(audit_file(tmp_path / "audit.jsonl")), RecordFilter())
    assert set(collection.partitions) == {3}
    assert all(math.isnan(lag) for lag in collection.write_lags_s)  # no Kafka write times in a file
    from_file = build_report(collection, read_labels(labels()), k=K)
    from_topic = build_report(collect(messages(), RecordFilter()), read_labels(labels()), k=K)
    # repr: NaN (nothing to measure) is not equal to itself
    assert repr([*from_file.days, from_file.overall]) == repr([*from_topic.days, from_topic.overall])
    assert from_file.collection.unreadable == 1


def test_audit_report_from_files_needs_no_kafka(tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_bytes(b"".join(value + b"\n" for value in labels()))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    common = ["audit", "report", "--bootstrap-servers", "127.0.0.1:1", "--k", str(K)]
    audit = str(audit_file(tmp_path / "audit.jsonl"))
    for out, extra in (("with", ["--labels-file", str(labels_file)]), ("without", [])):
        args = parser.parse_args([*common, "--audit-file", audit, *extra, "--out", str(tmp_path / out)])
        assert args.func(args) == 0
    with_labels = (tmp_path / "with" / "report.html").read_text()
    assert "<td>2026-03-02</td><td>4</td><td>1</td><td>1</td><td>4 (100.0%)</td>" in with_labels
    assert f"<td>audit file</td><td>{audit}</td>" in with_labels
    without = (tmp_path / "without" / "report.html").read_text()
    assert "<td>2026-03-02</td><td>4</td><td>1</td><td>1</td><td>0 (0.0%)</td>" in without
    direct = write_report_from_files(Path(audit), labels_file, tmp_path / "direct", k=K)
    assert daily_rows(direct.read_text()) == daily_rows(with_labels)


def daily_rows(text: str) -> list[str]:
    return re.findall(r"<tr><td>20\d\d-\d\d-\d\d</td>.*</tr>", text)


def hand_report(**options: object) -> Report:
    labelled = read_labels(labels())
    collection = collect(messages(), RecordFilter(), explain=labelled.frauds())
    return build_report(collection, labelled, k=K, options=ReportOptions(**options))  # type: ignore[arg-type]


def test_missed_fraud_by_count_and_amount_with_what_stood_out() -> None:
    missed = hand_report(missed_cases=5).missed
    # Frauds t1 (.95, 10), t5 (.20, 50), t6 (.80, 60): only t5 is below the review threshold 0.5.
    assert (missed.frauds, missed.fraud_amount, missed.missed, missed.missed_amount) == (3, 120.0, 1, 50.0)
    assert missed.rule_alerts == 0
    (case,) = missed.cases
    assert (case.transaction_id, case.card, case.amount, case.score, case.label) == (
        "t5",
        "A",
        50.0,
        0.2,
        "fraud",
    )
    assert case.time == DAY1 + 86400 + 5 * HOUR
    # Amounts 10..110: mean 60, sd 10*sqrt(10), so z = -10/31.62; card_count_1h n%3: mean 10/11,
    # sd sqrt(16/11 - 100/121), t5's 1 gives z = +0.115: the amount stands out more.
    (name1, value1, z1), (name2, value2, z2) = case.features
    assert (name1, value1, name2, value2) == ("amount", 50.0, "card_count_1h", 1.0)
    assert z1 == pytest.approx(-1 / math.sqrt(10)) and z2 == pytest.approx(0.1147, abs=1e-3)


def test_a_fraud_that_only_a_rule_alerted_on_is_still_missed_by_the_score() -> None:
    records = [dict(decision(4), decision="review", reason_codes=["rule:night_owl"])]
    collection = collect([TopicMessage(0, 0, None, None, orjson.dumps(r)) for r in records], RecordFilter())
    report = build_report(collection, read_labels([Label("t5", "A", True, DAY1 + 9 * 86400).to_json()]))
    assert (report.missed.missed, report.missed.rule_alerts) == (1, 1)
    assert not report.missed.cases[0].features  # not asked for: kept only for the frauds given
    (rule,) = report.reasons
    assert (rule.code, rule.fired, rule.frauds, rule.frauds_below_review) == ("rule:night_owl", 1, 1, 1)


def test_each_reason_code_and_rule_counted_with_its_precision() -> None:
    stats = {s.code: s for s in hand_report().reasons}
    assert set(stats) == {"score:block", "score:review", "feature:amount", "rule:night_owl"}
    # score:block on t1 (fraud), t6 (fraud), t9 (unlabelled); score:review on t2, t4 (unlabelled), t7.
    block, review, rule = stats["score:block"], stats["score:review"], stats["rule:night_owl"]
    assert (block.fired, block.labelled, block.frauds, block.precision) == (3, 2, 2, 1.0)
    assert (review.fired, review.labelled, review.frauds, review.precision) == (3, 2, 0, 0.0)
    assert (rule.fired, rule.labelled, rule.frauds, rule.precision) == (2, 2, 1, 0.5)
    assert (stats["feature:amount"].fired, stats["feature:amount"].precision) == (2, 0.5)


def test_review_queue_has_each_days_top_alerts_and_the_command_to_replay_each() -> None:
    queue = hand_report(queue_per_day=2).queue
    # Day 1 alerts t1 .95, t2 .60, t4 .55; day 2 t6 .80, t7 .70; day 3 t9 .90.
    assert [(day, [c.transaction_id for c in cases]) for day, cases in queue] == [
        (date(2026, 3, 1), ["t1", "t2"]),
        (date(2026, 3, 2), ["t6", "t7"]),
        (date(2026, 3, 3), ["t9"]),
    ]
    assert [day for day, _ in hand_report(queue_days=1).queue] == [date(2026, 3, 3)]
    assert (
        replay_command("t1", "fraud.audit")
        == "fraud-detector audit replay --transaction-id t1 --topic fraud.audit"
    )
    assert replay_command("a b", None) == "fraud-detector audit replay --transaction-id 'a b'"


def test_card_precision_has_its_ceiling_from_the_days_frauds() -> None:
    report = hand_report()
    # Top-2 places: day 1 one compromised card (A) -> 1/2; day 2 A and B -> 2/2; day 3 none -> 0.
    assert [d.card_precision_ceiling for d in report.days] == [0.5, 1.0, 0.0]
    assert report.overall.card_precision_ceiling == pytest.approx(0.5)


def score_drift(day: float, before: float, after: float) -> TopicMessage:
    record = {
        "record_type": "score_drift",
        "event_time": format_timestamp(DAY1 + day * 86400),
        "model": {"generation": 1},
        "detail": {"mean_before": before, "mean_after": after},
    }
    return TopicMessage(0, 0, None, None, orjson.dumps(record))


def test_only_material_score_drift_is_listed() -> None:
    drifts = [score_drift(0.5, 0.131, 0.121), score_drift(1.5, 0.10, 0.15)]
    collection = collect([*messages(), *drifts], RecordFilter())
    default = build_report(collection, read_labels(labels()), K).events
    assert [(e.kind, e.detail.get("mean_after")) for e in default.events] == [
        ("model_swapped", None),
        ("score_drift", 0.15),
    ]
    assert default.small_score_drifts == {0: 1}  # 0.131 -> 0.121 is 8%, under the default 20%
    strict = build_report(collection, read_labels(labels()), K, options=ReportOptions(min_score_shift=0.6))
    assert [e.kind for e in strict.events.events] == ["model_swapped"]
    assert material_events(collection.events, 0.05).small_score_drifts == {}


def test_page_answers_the_analysts_questions(tmp_path: Path) -> None:
    report = hand_report(audit_topic="fraud.audit")
    text = write_report(report, tmp_path, {"audit topic": "fraud.audit"}).read_text()
    assert "<td>frauds scored below the review threshold</td><td>1 of 3 (50.00 of 120.00)</td>" in text
    assert "<td>t5</td><td>A</td>" in text
    assert "<code>fraud-detector audit replay --transaction-id t9 --topic fraud.audit</code>" in text
    assert f"<td><code>rule:night_owl</code></td><td>{sentence('rule:night_owl')}</td>" in text
    assert f"<abbr title='{sentence('feature:amount')}'>feature:amount</abbr>" in text
    assert "<th>ceiling</th>" in text and "(ceiling 0.500)" in text
