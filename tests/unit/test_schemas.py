"""The wire contract's JSON Schemas (schemas/) agree with the code that writes and reads the records.

Encoders (the simulator, ``Transaction.to_json`` / ``Label.to_json``, the service's audit, decision
and dead-letter outputs) must produce valid instances. Decoders must refuse whatever the schemas
refuse, so a payload that fails validation upstream would be dead-lettered here too; the schemas
may accept payloads the decoder refuses only for what no schema can see (duplicates, the UTC year).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from detector.audit.chain import ChainState
from detector.audit.records import Provenance, event_record
from detector.engine import outputs
from detector.engine.engine import DetectionEngine
from detector.engine.outputs import EngineEvent
from detector.engine.records import InvalidInput, Label, Transaction, decode_label, decode_transaction
from detector.service.partition import PartitionProcessor
from detector.service.topic_map import AUDIT, DEAD_LETTER, DECISIONS, LABELS, TRANSACTIONS, TopicMap
from producers.config import SimulationConfig
from producers.population import PopulationConfig
from producers.simulator import SimulatedTransaction, Simulator
from producers.sinks import JsonlSink

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_NAMES = ("transaction", "label", "decision", "dead-letter", "audit-record")
T0 = 1_700_000_000.0
VALID_TRANSACTION = {
    "transaction_id": "t1",
    "timestamp": "2018-04-01T00:00:31Z",
    "customer_id": "c1",
    "terminal_id": "m1",
    "amount": 12.5,
    "currency": "EUR",
}
VALID_LABEL = {
    "transaction_id": "t1",
    "customer_id": "c1",
    "is_fraud": True,
    "timestamp": "2018-04-02T10:00:00Z",
}


@cache
def validator(name: str) -> Draft202012Validator:
    """The schema as the installed package ships it (formats are annotations, as by default)."""
    text = (resources.files("detector") / "schemas" / f"{name}.schema.json").read_text()
    return Draft202012Validator(orjson.loads(text))


def schema_of(name: str) -> Mapping[str, Any]:
    """The schema :func:`validator` checks with: an object, as none of ours is a boolean schema."""
    schema = validator(name).schema
    assert not isinstance(schema, bool)
    return schema


def errors(name: str, instance: Any) -> list[str]:
    return [error.message for error in validator(name).iter_errors(instance)]


def assert_valid(name: str, instance: Any) -> None:
    assert not errors(name, instance), (instance, errors(name, instance))


def refuses(decoder: Callable[[bytes], object], payload: bytes) -> bool:
    try:
        decoder(payload)
    except InvalidInput:
        return True
    return False


def test_each_schema_is_draft_2020_12_and_the_repository_copy_is_the_packaged_one() -> None:
    for name in SCHEMA_NAMES:
        schema = schema_of(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
        assert orjson.loads((ROOT / "schemas" / f"{name}.schema.json").read_bytes()) == schema
    assert sorted(path.name for path in (ROOT / "schemas").iterdir()) == sorted(
        f"{name}.schema.json" for name in SCHEMA_NAMES
    )


# -- encoders ------------------------------------------------------------------------------------


def simulated_stream(tmp_path: Path) -> list[SimulatedTransaction | Label]:
    """A few days of the simulator's stream, also written as its JSONL output."""
    config = SimulationConfig(
        seed=3, days=3, fraud_rate=0.05, population=PopulationConfig(cards=200, terminals=30)
    )
    events = list(Simulator(config))
    sink = JsonlSink(tmp_path)
    for event in events:
        if isinstance(event, Label):
            sink.send_label(event)
        else:
            sink.send_transaction(event.transaction)
    sink.close()
    return events


def test_the_simulators_output_is_valid_and_decodes(tmp_path: Path) -> None:
    events = simulated_stream(tmp_path)
    for topic, name, decoder in (
        ("transactions", "transaction", decode_transaction),
        ("labels", "label", decode_label),
    ):
        lines = (tmp_path / f"{topic}.jsonl").read_bytes().splitlines()
        assert lines
        for line in lines:
            assert_valid(name, orjson.loads(line))
            decoder(line)
    assert any(isinstance(event, Label) for event in events)


@pytest.mark.parametrize(
    "record",
    [
        Transaction("t1", T0, "c", "m", 0.0),
        Transaction("t2", T0 + 0.25, "c", "m", 1e12, "USD", {"channel": "web", "risk": 0.3}),
        Label("t1", "c", False, T0 + 0.000001),
    ],
)
def test_to_json_gives_valid_instances(record: Transaction | Label) -> None:
    assert_valid("label" if isinstance(record, Label) else "transaction", orjson.loads(record.to_json()))


def dead_letter_envelope(key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> dict:
    """A dead letter as the schema describes it: bytes as base64, headers as text."""
    return {
        "key": None if key is None else base64.b64encode(key).decode(),
        "value": base64.b64encode(value).decode(),
        "headers": {name: raw.decode() for name, raw in headers},
    }


BAD_INPUTS = [
    (TRANSACTIONS, b"key", b"\x00garbage"),
    (TRANSACTIONS, None, None),
    (TRANSACTIONS, b"c1", orjson.dumps({**VALID_TRANSACTION, "amount": -1})),
    (TRANSACTIONS, b"c1", orjson.dumps({**VALID_TRANSACTION, "timestamp": "yesterday"})),
    (LABELS, b"c1", orjson.dumps({**VALID_LABEL, "is_fraud": "yes"})),
]


def test_the_services_audit_decision_and_dead_letter_records_are_valid(tmp_path: Path) -> None:
    """Through the partition processor, as the service writes them: chained, pseudonymised."""
    processor = PartitionProcessor(
        partition=1,
        engine=DetectionEngine(),
        chain=ChainState(partition=1, key=b"chain-key"),
        instance_id="detector-1",
        topics=TopicMap({TRANSACTIONS: "transactions", LABELS: "labels"}),
        pseudonym_key=b"pseudonyms",
    )
    produced = []
    for offset, event in enumerate(simulated_stream(tmp_path)):
        if isinstance(event, Label):
            produced += processor.process(LABELS, offset, event.customer_id.encode(), event.to_json())
        else:
            tx = event.transaction
            produced += processor.process(TRANSACTIONS, offset, tx.customer_id.encode(), tx.to_json())
    for offset, (role, key, value) in enumerate(BAD_INPUTS, start=len(produced)):
        produced += processor.process(role, offset, key, value)
    seen: set[str] = set()
    for out in produced:
        if out.role == AUDIT:
            record = orjson.loads(out.value)
            seen.add("decision" if record["record_type"] == "decision" else record["record_type"])
            assert_valid("audit-record", record)
        elif out.role == DECISIONS:
            assert_valid("decision", orjson.loads(out.value))
        else:
            assert out.role == DEAD_LETTER
            assert_valid("dead-letter", dead_letter_envelope(out.key, out.value, out.headers))
    assert {"decision", "rejected"} <= seen
    assert sum(out.role == DEAD_LETTER for out in produced) == len(BAD_INPUTS)


EVENT_KINDS = sorted(
    value for name, value in vars(outputs).items() if name.isupper() and isinstance(value, str)
)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_every_engine_event_kind_is_a_valid_audit_record(kind: str) -> None:
    event = EngineEvent(kind, T0 + 0.5, 2, {"stream": "errors", "error_rate": 0.1})
    record = event_record(event, "logistic_regression", Provenance("labels", 0, 5, "detector-1"))
    ChainState(partition=0).seal(record)
    assert_valid("audit-record", record)


def test_the_schemas_name_exactly_the_codes_event_kinds_and_refusal_reasons() -> None:
    audit = schema_of("audit-record")["$defs"]
    assert sorted(audit["engine_event"]["properties"]["record_type"]["enum"]) == EVENT_KINDS
    raised = set()
    for module in (ROOT / "detector" / "engine").glob("*.py"):
        raised |= set(re.findall(r'InvalidInput\(\s*"(\w+)"', module.read_text()))
    header = schema_of("dead-letter")["properties"]["headers"]["properties"]["dlq.reason"]
    assert set(header["enum"]) == raised
    assert audit["rejected"]["properties"]["reason"]["enum"] == header["enum"]


# -- decoders ------------------------------------------------------------------------------------

# Payloads both the schema and the decoder must refuse: the schema is not a blank cheque.
REFUSED_TRANSACTIONS: list[Any] = [
    {k: v for k, v in VALID_TRANSACTION.items() if k != field}
    for field in ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
] + [
    {**VALID_TRANSACTION, "transaction_id": ""},
    {**VALID_TRANSACTION, "customer_id": "c" * 129},
    {**VALID_TRANSACTION, "terminal_id": 7},
    {**VALID_TRANSACTION, "amount": "12.5"},
    {**VALID_TRANSACTION, "amount": True},
    {**VALID_TRANSACTION, "amount": -0.01},
    {**VALID_TRANSACTION, "amount": 1e12 + 1},
    {**VALID_TRANSACTION, "timestamp": 1522540831},
    {**VALID_TRANSACTION, "timestamp": "2018-04-01"},
    {**VALID_TRANSACTION, "timestamp": "04/01/2018T00:00:31Z"},
    {**VALID_TRANSACTION, "timestamp": "2018-04-01T00:00:31Z" + " " * 30},
    {**VALID_TRANSACTION, "currency": "EURO"},
    {**VALID_TRANSACTION, "currency": "E1R"},
    {**VALID_TRANSACTION, "currency": ""},
    [VALID_TRANSACTION],
    "t1",
]
REFUSED_LABELS = [{k: v for k, v in VALID_LABEL.items() if k != field} for field in VALID_LABEL] + [
    {**VALID_LABEL, "is_fraud": 1},
    {**VALID_LABEL, "is_fraud": None},
    {**VALID_LABEL, "transaction_id": ""},
    {**VALID_LABEL, "timestamp": "2018-04-02"},
]
# Forms the decoder takes beyond RFC 3339: a schema refusing them would refuse good input.
ACCEPTED_TIMESTAMPS = [
    "2018-04-01T00:00:31+02:00",
    "2018-04-01t00:00:31.123456Z",
    "2018-04-01T00:00Z",
    "2018-04-01T00:00:31,5+00",
    "20180401T000031Z",
    "2018-W13-7T00:00:31Z",
    "2018-04-01T00:00:31-0530",
    "1999-12-31T23:30:00-01:00",
]


@pytest.mark.parametrize("body", REFUSED_TRANSACTIONS, ids=repr)
def test_transactions_the_schema_refuses_are_refused(body: Any) -> None:
    assert errors("transaction", body)
    assert refuses(decode_transaction, orjson.dumps(body))


@pytest.mark.parametrize("body", REFUSED_LABELS, ids=repr)
def test_labels_the_schema_refuses_are_refused(body: Any) -> None:
    assert errors("label", body)
    assert refuses(decode_label, orjson.dumps(body))


@pytest.mark.parametrize("timestamp", ACCEPTED_TIMESTAMPS)
def test_timestamps_the_decoder_takes_pass_the_schema(timestamp: str) -> None:
    for name, valid, decoder in (
        ("transaction", VALID_TRANSACTION, decode_transaction),
        ("label", VALID_LABEL, decode_label),
    ):
        body = {**valid, "timestamp": timestamp}
        decoder(orjson.dumps(body))
        assert_valid(name, body)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
# Values at a field's bounds, where a schema and a decoder would part if they disagreed.
EDGE_VALUES: list[Any] = [
    *("", "c" * 128, "c" * 129, "EUR", "eur", "ÉÇÜ", "E U", "€€€", "E1R", "EU"),
    *(*ACCEPTED_TIMESTAMPS, "2018-04-01T00:00:31", "2018-04-01T00:00:31z", "2150-01-01T00:00:00Z"),
    *(0, -0.0, -1e-9, 1e12, 1e12 + 1, 10**12, 10**12 + 1, 1, 0.5, True, False, None, [], {}),
]
NEAR_BOUNDS = st.sampled_from(EDGE_VALUES) | st.text(max_size=140) | st.floats(min_value=-1, max_value=1.1e12)


def test_every_edge_value_the_schemas_refuse_is_refused() -> None:
    """Each field of a valid transaction and label replaced by each edge value, exhaustively."""
    for name, valid, decoder in (
        ("transaction", VALID_TRANSACTION, decode_transaction),
        ("label", VALID_LABEL, decode_label),
    ):
        for field in valid:
            for value in EDGE_VALUES:
                body = {**valid, field: value}
                if errors(name, body):
                    assert refuses(decoder, orjson.dumps(body)), body


def mutated(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``valid`` with a field or two deleted or replaced, maybe extras added; or not an object at all."""
    replacement = st.none() | (NEAR_BOUNDS | JSON_VALUES).map(lambda value: (value,))
    changes = st.dictionaries(st.sampled_from(sorted(valid)), replacement, min_size=1, max_size=2)

    def apply(change: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
        body = {**extras, **valid}
        for name, new in change.items():
            if new is None:
                del body[name]
            else:
                body[name] = new[0]
        return body

    extras = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2)
    return st.builds(apply, changes, extras) | JSON_VALUES


@settings(max_examples=300, deadline=None)
@given(body=mutated(VALID_TRANSACTION))
def test_every_transaction_the_schema_refuses_the_decoder_refuses(body: Any) -> None:
    if errors("transaction", body):
        assert refuses(decode_transaction, orjson.dumps(body)), body


@settings(max_examples=300, deadline=None)
@given(body=mutated(VALID_LABEL))
def test_every_label_the_schema_refuses_the_decoder_refuses(body: Any) -> None:
    if errors("label", body):
        assert refuses(decode_label, orjson.dumps(body)), body


def test_a_small_payload_limit_is_the_decoders_own() -> None:
    """The size limit is a setting (FRAUD_MAX_MESSAGE_BYTES), so no schema states it."""
    payload = Transaction("t1", T0, "c", "m", 1.0).to_json()
    assert_valid("transaction", orjson.loads(payload))
    assert refuses(lambda raw: decode_transaction(raw, max_bytes=len(payload) - 1), payload)
