"""The audit record format does not drift: records sealed by an earlier release still verify, are
selected, exported byte for byte and replayed with their features by name, and today's builders
write exactly the same bytes as they did when ``WRITTEN`` was pinned.

``WRITTEN_V1`` was written by a release of format 1 (features as a name -> value object): a decision
and an engine event through the record builders, and a rejected input through the service's
partition processor, sealed in partition 3 with ``KEY`` at the wall-clock time ``PROCESSED_AT``.
``WRITTEN`` is the same in format 2: the feature schema first, then the decision naming it.
"""

from __future__ import annotations

import io

import orjson
import pytest

from detector.audit import records
from detector.audit.chain import ChainState
from detector.audit.collection import collect
from detector.audit.export import CsvSink, ExpandedJsonlSink, JsonlSink, export
from detector.audit.reader import TopicMessage
from detector.audit.records import (
    Provenance,
    WrittenSchema,
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
WRITTEN_V1 = [
    b'{"amount":57.16,"chain":{"hash":"bd4cccbb285f26aad35113cdfc42280f6e6929042de257ab77fc9122e5ddfc5d",'
    b'"partition":3,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
    b'"seq":0},"currency":"EUR","customer_id":"p:d2aa4e140796eb25992676f4903bf2aa","decision":"block",'
    b'"drift_state":"stable","event_time":"2026-01-01T00:00:00.500000Z","features":{"amount":57.16,'
    b'"tx_count_1d":3.0},"input":{"offset":41,"partition":3,"topic":"transactions"},'
    b'"instance_id":"instance-1","model":{"generation":2,"kind":"logistic_regression"},'
    b'"processed_at":"2026-03-01T12:00:00.250Z","processing_ms":1.235,"reason_codes":["score:block",'
    b'"feature:amount"],"record_type":"decision","schema":1,"score":0.8125,"terminal_id":"m-1",'
    b'"thresholds":{"block":0.7,"review":0.3},"top_features":[{"contribution":0.5,"name":"amount"},'
    b'{"contribution":0.25,"name":"tx_count_1d"}],"transaction_id":"t-1"}',
    b'{"chain":{"hash":"343b0e1a6f3e6e3a3aedc6b9552b28cd75f8710e98ee3384b1dc68ef566e3976","partition":3,'
    b'"prev_hash":"bd4cccbb285f26aad35113cdfc42280f6e6929042de257ab77fc9122e5ddfc5d","seq":1},'
    b'"detail":{"labels":250},"event_time":"2026-01-01T00:00:01Z","input":{"offset":41,"partition":3,'
    b'"topic":"transactions"},"instance_id":"instance-1","model":{"generation":3,'
    b'"kind":"logistic_regression"},"processed_at":"2026-03-01T12:00:00.250Z",'
    b'"record_type":"model_swapped","schema":1}',
    b'{"chain":{"hash":"d3eeb62acb2ce70956d598089d9972c37daf7e9f000618846113e568fc477460","partition":3,'
    b'"prev_hash":"343b0e1a6f3e6e3a3aedc6b9552b28cd75f8710e98ee3384b1dc68ef566e3976","seq":2},'
    b'"customer_key":"p:d2aa4e140796eb25992676f4903bf2aa","detail":"not valid UTF-8 JSON: unexpected'
    b' character, expected a string key: line 1 column 2 (char 1)","input":{"offset":42,"partition":3,'
    b'"topic":"transactions"},"instance_id":"instance-1","reason":"bad_json","record_type":"rejected",'
    b'"schema":1}',
]
WRITTEN = [
    b'{"chain":{"hash":"f8fbe2a5776d47c55a0ec9ea867257cd26a5408151e401ad8c8c99d993fb4ee2","partition":3,"p'
    b'rev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":0},"feature_schem'
    b'a":"46235810c72f1031","instance_id":"instance-1","names":["amount","tx_count_1d"],"processed_at":"20'
    b'26-03-01T12:00:00.250Z","record_type":"feature_schema","schema":2}',
    b'{"amount":57.16,"chain":{"hash":"8bb845ada843a62f2357c6207203c15ed02facf5f960ba1d5b338508e0001b60","'
    b'partition":3,"prev_hash":"f8fbe2a5776d47c55a0ec9ea867257cd26a5408151e401ad8c8c99d993fb4ee2","seq":1}'
    b',"currency":"EUR","customer_id":"p:d2aa4e140796eb25992676f4903bf2aa","decision":"block","drift_state'
    b'":"stable","event_time":"2026-01-01T00:00:00.500000Z","feature_schema":"46235810c72f1031","features"'
    b':[57.16,3.0],"input":{"offset":41,"partition":3,"topic":"transactions"},"instance_id":"instance-1","'
    b'model":{"generation":2,"kind":"logistic_regression","version":29450426},"processed_at":"2026-03-01T1'
    b'2:00:00.250Z","processing_ms":1.235,"reason_codes":["score:block","feature:amount"],"record_type":"d'
    b'ecision","schema":2,"score":0.8125,"terminal_id":"m-1","thresholds":{"block":0.7,"review":0.3},"top_'
    b'features":[{"contribution":0.5,"name":"amount"},{"contribution":0.25,"name":"tx_count_1d"}],"transac'
    b'tion_id":"t-1"}',
    b'{"chain":{"hash":"94e0aaafb92cb37d71e650cc057870c3344377d5db278660f21815fdafc0e486","partition":3,"p'
    b'rev_hash":"8bb845ada843a62f2357c6207203c15ed02facf5f960ba1d5b338508e0001b60","seq":2},"detail":{"lab'
    b'els":250},"event_time":"2026-01-01T00:00:01Z","input":{"offset":41,"partition":3,"topic":"transactio'
    b'ns"},"instance_id":"instance-1","model":{"generation":3,"kind":"logistic_regression"},"processed_at"'
    b':"2026-03-01T12:00:00.250Z","record_type":"model_swapped","schema":2}',
    b'{"chain":{"hash":"e3fbbe0126d6a443a0fe7f0b3f899d9bec7c18a3b44e3a8c73d2d5b2bd953288","partition":3,"p'
    b'rev_hash":"94e0aaafb92cb37d71e650cc057870c3344377d5db278660f21815fdafc0e486","seq":3},"customer_key"'
    b':"p:d2aa4e140796eb25992676f4903bf2aa","detail":"not valid UTF-8 JSON: unexpected character, expected'
    b' a string key: line 1 column 2 (char 1)","input":{"offset":42,"partition":3,"topic":"transactions"},'
    b'"instance_id":"instance-1","reason":"bad_json","record_type":"rejected","schema":2}',
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
    schema = WrittenSchema()
    schema_record = schema.record_if_new(decision.features, "instance-1")
    assert schema_record is not None and schema.record_if_new(dict(decision.features), "instance-1") is None
    written = [
        chain.seal_encoded(schema_record),
        chain.seal_encoded(
            decision_record(
                decision,
                schema.schema_id,
                Provenance(transactions, PARTITION, 41, "instance-1"),
                1.23456,
                PSEUDONYM_KEY,
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


FEATURES = {"amount": 57.16, "tx_count_1d": 3.0}


def messages_of(values: list[bytes]) -> list[TopicMessage]:
    return [TopicMessage(PARTITION, 2 * n + 1, None, None, value) for n, value in enumerate(values)]


@pytest.mark.parametrize("values", [WRITTEN_V1, WRITTEN], ids=["format 1", "format 2"])
def test_records_of_either_format_verify_and_replay_with_their_features_by_name(values: list[bytes]) -> None:
    messages = messages_of(values)
    verification = verify_messages([(m.partition, m.offset, m.value) for m in messages], key=KEY)
    assert verification.ok and verification.verified == len(values)
    keep = RecordFilter(customers=customer_ids(["c-1"], PSEUDONYM_KEY))
    expanded, table = io.BytesIO(), io.BytesIO()
    export(messages, keep, ExpandedJsonlSink(expanded))
    export(messages, keep, CsvSink(table))
    (line,) = expanded.getvalue().splitlines()
    assert orjson.loads(line)["features"] == FEATURES and orjson.loads(line)["transaction_id"] == "t-1"
    assert b'"{""amount"":57.16,""tx_count_1d"":3.0}"' in table.getvalue()
    report = collect(messages, RecordFilter(), explain={"t-1"})
    assert report.features == {"t-1": FEATURES} and report.transaction_ids == ["t-1"]


@pytest.mark.parametrize("values", [WRITTEN_V1, WRITTEN], ids=["format 1", "format 2"])
def test_a_jsonl_export_is_the_records_untouched_with_the_feature_schema_they_name(
    values: list[bytes],
) -> None:
    out = io.BytesIO()
    keep = RecordFilter(customers=customer_ids(["c-1"], PSEUDONYM_KEY))
    counts = export(messages_of(values), keep, JsonlSink(out))
    decisions = values[:-2]  # format 2: the schema before the decision
    assert (counts.read, counts.written, counts.unreadable) == (len(values), len(decisions), 0)
    assert out.getvalue() == b"".join(value + b"\n" for value in decisions)
    everything = io.BytesIO()
    export(messages_of(values), RecordFilter(), JsonlSink(everything))
    assert everything.getvalue() == b"".join(value + b"\n" for value in values)


def test_decisions_whose_schema_was_not_read_keep_their_values_in_order() -> None:
    expanded = io.BytesIO()
    export(messages_of(WRITTEN[1:2]), RecordFilter(), ExpandedJsonlSink(expanded))
    assert orjson.loads(expanded.getvalue())["features"] == list(FEATURES.values())


def test_a_record_read_back_is_ours_only_with_a_whole_chain_of_its_partition() -> None:
    record = decode_record(WRITTEN_V1[2])
    assert record is not None and record["record_type"] == "rejected"
    assert chained_for(record, PARTITION) and not chained_for(record, PARTITION + 1)
    assert (
        decode_record(b"[1, 2]") is None
        and decode_record(b"{not json") is None
        and decode_record(None) is None
    )
    for field in ("partition", "seq", "prev_hash", "hash"):
        cut = orjson.loads(WRITTEN_V1[2])
        del cut["chain"][field]
        assert chain_fields(cut) is None and not chained_for(cut, PARTITION)
    record["chain"]["seq"] = "2"
    assert chain_fields(record) is not None and not chained_for(record, PARTITION)
