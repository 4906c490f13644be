"""The audit record format does not drift: records sealed by an earlier release still verify, are
selected and exported byte for byte, and today's builders write exactly the same bytes.

``WRITTEN`` was written by an earlier release: a decision and an engine event through the record
builders, and a rejected input through the service's partition processor, sealed in partition 3
with ``KEY`` at the wall-clock time ``PROCESSED_AT``.
"""

from __future__ import annotations

import io

import orjson
import pytest

from detector.audit import records
from detector.audit.chain import ChainState
from detector.audit.export import JsonlSink, export
from detector.audit.reader import TopicMessage
from detector.audit.records import (
    Provenance,
    chain_fields,
    chained_for,
    decision_record,
    decode_record,
    event_record,
    rejected_record,
)
from detector.audit.selection import RecordFilter, customer_ids
from detector.audit.verify import verify_messages
from detector.engine.outputs import Decision, EngineEvent
from detector.engine.records import InvalidInput, Transaction, decode_transaction

KEY, PSEUDONYM_KEY = b"audit-chain-key", b"pseudonym-key"
PROCESSED_AT = "2026-03-01T12:00:00.250Z"
PARTITION = 3
WRITTEN = [
    b'{"amount":57.16,"chain":{"hash":"e62dfcbeecac666db6d33ecb1c26e7c2f4676d847f2ebea2670034f48e191722","'
    b'partition":3,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":0}'
    b',"currency":"EUR","customer_id":"p:d2aa4e140796eb25992676f4903bf2aa","decision":"block","drift_state'
    b'":"stable","event_time":"2026-01-01T00:00:00.500000Z","features":{"amount":57.16,"tx_count_1d":3.0},'
    b'"input":{"offset":41,"partition":3,"topic":"transactions"},"instance_id":"instance-1","model":{"gene'
    b'ration":2,"kind":"logistic_regression","version":29450426},"processed_at":"2026-03-01T12:00:00.250Z"'
    b',"processing_ms":1.235,"reason_codes":["score:block","feature:amount"],"record_type":"decision","sch'
    b'ema":1,"score":0.8125,"terminal_id":"m-1","thresholds":{"block":0.7,"review":0.3},"top_features":[{"'
    b'contribution":0.5,"name":"amount"},{"contribution":0.25,"name":"tx_count_1d"}],"transaction_id":"t-1'
    b'"}',
    b'{"chain":{"hash":"b52085fe50f36b27d10a4c7b87b319342fbc75c385847f24c26042fad80ce701","partition":3,"p'
    b'rev_hash":"e62dfcbeecac666db6d33ecb1c26e7c2f4676d847f2ebea2670034f48e191722","seq":1},"detail":{"lab'
    b'els":250},"event_time":"2026-01-01T00:00:01Z","input":{"offset":41,"partition":3,"topic":"transactio'
    b'ns"},"instance_id":"instance-1","model":{"generation":3,"kind":"logistic_regression"},"processed_at"'
    b':"2026-03-01T12:00:00.250Z","record_type":"model_swapped","schema":1}',
    b'{"chain":{"hash":"5375bddd69ce0a743d61e48011aa8d4fff2e11dafc26b0aafb90c8f9599efebd","partition":3,"p'
    b'rev_hash":"b52085fe50f36b27d10a4c7b87b319342fbc75c385847f24c26042fad80ce701","seq":2},"customer_key"'
    b':"p:d2aa4e140796eb25992676f4903bf2aa","detail":"not valid UTF-8 JSON: unexpected character, expected'
    b' a string key: line 1 column 2 (char 1)","input":{"offset":42,"partition":3,"topic":"transactions"},'
    b'"instance_id":"instance-1","reason":"bad_json","record_type":"rejected","schema":1}',
]


def rejection() -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        decode_transaction(b"{not json")
    return refused.value


def test_todays_builders_write_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "_now", lambda: PROCESSED_AT)
    transaction = Transaction("t-1", 1767225600.5, "c-1", "m-1", 57.16, "EUR", {})
    decision = Decision(
        transaction=transaction,
        score=0.8125,
        outcome="block",
        reason_codes=("score:block", "feature:amount"),
        top_features=(("amount", 0.5), ("tx_count_1d", 0.25)),
        features={"amount": 57.16, "tx_count_1d": 3.0},
        model_kind="logistic_regression",
        model_generation=2,
        drift_state="stable",
        review_threshold=0.3,
        block_threshold=0.7,
        model_version=29450426,
    )
    event = EngineEvent("model_swapped", 1767225601.0, 3, {"labels": 250})
    chain = ChainState(partition=PARTITION, key=KEY)
    transactions = "transactions"
    written = [
        chain.seal_encoded(
            decision_record(
                decision, Provenance(transactions, PARTITION, 41, "instance-1"), 1.23456, PSEUDONYM_KEY
            )
        ),
        chain.seal_encoded(
            event_record(event, "logistic_regression", Provenance(transactions, PARTITION, 41, "instance-1"))
        ),
        chain.seal_encoded(
            rejected_record(
                rejection(), b"c-1", Provenance(transactions, PARTITION, 42, "instance-1"), PSEUDONYM_KEY
            )
        ),
    ]
    assert written == WRITTEN


def test_earlier_records_verify_and_are_selected_and_exported_untouched() -> None:
    messages = [TopicMessage(PARTITION, 2 * n + 1, None, None, value) for n, value in enumerate(WRITTEN)]
    verification = verify_messages([(m.partition, m.offset, m.value) for m in messages], key=KEY)
    assert verification.ok and verification.verified == 3
    out = io.BytesIO()
    keep = RecordFilter(customers=customer_ids(["c-1"], PSEUDONYM_KEY))
    counts = export(messages, keep, JsonlSink(out))
    assert (counts.read, counts.written, counts.unreadable) == (3, 1, 0)
    assert out.getvalue() == WRITTEN[0] + b"\n"


def test_a_record_read_back_is_ours_only_with_a_whole_chain_of_its_partition() -> None:
    record = decode_record(WRITTEN[2])
    assert record is not None and record["record_type"] == "rejected"
    assert chained_for(record, PARTITION) and not chained_for(record, PARTITION + 1)
    assert (
        decode_record(b"[1, 2]") is None
        and decode_record(b"{not json") is None
        and decode_record(None) is None
    )
    for field in ("partition", "seq", "prev_hash", "hash"):
        cut = orjson.loads(WRITTEN[2])
        del cut["chain"][field]
        assert chain_fields(cut) is None and not chained_for(cut, PARTITION)
    record["chain"]["seq"] = "2"
    assert chain_fields(record) is not None and not chained_for(record, PARTITION)
