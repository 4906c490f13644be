"""The per-partition service logic, in memory: outputs, dead letters, replay after a restart."""

from __future__ import annotations

import orjson

from detector.audit.chain import GENESIS, ChainState, verify_record
from detector.engine.engine import DetectionEngine
from detector.engine.records import Label, Transaction
from detector.service.partition import REPLAYED, Kind, Outcome, PartitionProcessor
from detector.service.topic_map import AUDIT, DEAD_LETTER, DECISIONS, LABELS, TRANSACTIONS, TopicMap

T0 = 1_700_000_000.0


def processor(**kwargs: object) -> PartitionProcessor:
    return PartitionProcessor(
        partition=2,
        engine=DetectionEngine(),
        chain=ChainState(partition=2),
        instance_id="test",
        topics=TopicMap({TRANSACTIONS: "tx", LABELS: "labels"}),
        **kwargs,  # type: ignore[arg-type]
    )


def tx(i: int) -> bytes:
    return Transaction(f"t{i}", T0 + i, f"card-{i % 3}", "m", 10.0 + i).to_json()


def audit_records(outputs: list) -> list[dict]:
    return [orjson.loads(out.value) for out in outputs if out.role == AUDIT]


def test_a_transaction_gives_a_chained_audit_record_and_a_compact_decision() -> None:
    p = processor(pseudonym_key=b"secret")
    first = p.process(TRANSACTIONS, 40, b"card-1", tx(1))
    second = p.process(TRANSACTIONS, 41, b"card-2", tx(2))
    # The chain's first decision comes after the feature schema it names; later ones need none.
    assert [out.role for out in first] == [AUDIT, AUDIT, DECISIONS]
    assert [out.role for out in second] == [AUDIT, DECISIONS]
    schema, *records = audit_records(first + second)
    assert schema["record_type"] == "feature_schema" and schema["names"] == list(p.engine.extractor.names)
    assert verify_record(schema, 0, GENESIS, partition=2) is None
    assert verify_record(records[0], 1, schema["chain"]["hash"], partition=2) is None
    assert verify_record(records[1], 2, records[0]["chain"]["hash"], partition=2) is None
    assert {r["feature_schema"] for r in records} == {schema["feature_schema"]}
    assert len(records[0]["features"]) == len(schema["names"])
    assert records[0]["input"] == {"topic": "tx", "partition": 2, "offset": 40}
    assert records[0]["customer_id"].startswith("p:") and "card" not in records[0]["customer_id"]
    reply = orjson.loads(first[2].value)
    assert reply["transaction_id"] == "t1" and reply["decision"] == "approve"
    assert p.positions == {TRANSACTIONS: 42}


def test_bad_input_is_dead_lettered_with_its_original_bytes_and_audited() -> None:
    p = processor()
    outputs = p.process(TRANSACTIONS, 7, b"key", b"\x00garbage")
    dead = [out for out in outputs if out.role == DEAD_LETTER]
    assert len(dead) == 1 and dead[0].value == b"\x00garbage" and dead[0].key == b"key"
    headers = dict(dead[0].headers)
    assert headers["dlq.reason"] == b"bad_json" and headers["dlq.offset"] == b"7"
    (audit,) = audit_records(outputs)
    assert audit["record_type"] == "rejected" and audit["reason"] == "bad_json"
    assert p.outcomes == {Outcome(Kind.REJECTED, "bad_json"): 1}
    # A label for a transaction that names another customer is refused the same way.
    p.process(TRANSACTIONS, 8, b"card-1", tx(1))
    refused = p.process(LABELS, 0, b"x", Label("t1", "someone-else", True, T0 + 5).to_json())
    assert (
        dict(next(out for out in refused if out.role == DEAD_LETTER).headers)["dlq.reason"]
        == b"label_mismatch"
    )


def test_replayed_records_rebuild_state_but_emit_nothing_and_never_lower_the_offsets() -> None:
    original = processor()
    for i in range(10):
        original.process(TRANSACTIONS, i, b"k", tx(i))
    # Restart: state rebuilt from offset 0, output committed up to offset 6.
    restarted = processor(replay_until={TRANSACTIONS: 6}, positions={TRANSACTIONS: 0})
    restarted.chain = ChainState(partition=2, next_seq=6, last_hash="h5")
    assert restarted.committable_offsets() == {TRANSACTIONS: 6}
    for i in range(6):
        assert restarted.process(TRANSACTIONS, i, b"k", tx(i)) == []
        assert restarted.committable_offsets()[TRANSACTIONS] == 6
    assert restarted.chain.next_seq == 6 and restarted.outcomes[REPLAYED] == 6
    schema, live = audit_records(restarted.process(TRANSACTIONS, 6, b"k", tx(6)))
    assert schema["chain"]["seq"] == 6 and schema["chain"]["prev_hash"] == "h5"
    assert live["chain"]["seq"] == 7 and live["feature_schema"] == schema["feature_schema"]
    assert restarted.engine.stats["transactions_scored"] == 7
