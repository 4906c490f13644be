"""Hostile input through Kafka: each bad message is dead-lettered with its reason, each good one decided once.

Each hostile message is built together with the outcome the wire contract gives it (README,
``detector/engine/records.py``, ``engine.py``), so the test knows exactly which must be dead-lettered
and why; nothing is classified by running the decoder. The service runs as a real process, must stay
up throughout, exit 0 on SIGTERM, and keep its resident memory bounded.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.engine.records import MAX_ID_LENGTH, MAX_PAYLOAD_BYTES, Label, Transaction, format_timestamp
from devkit.process import ServiceProcess
from devkit.publishing import publish
from devkit.reading import CommittedReader
from tests.integration.rss import MB, RssSampler, needs_proc, summary_mb
from tests.integration.service_harness import ServiceTopics, audit_decisions, wait_until
from tests.integration.test_service import _wait_for_topic, decided, simulated

pytestmark = [pytest.mark.kafka, needs_proc]

RSS_LIMIT = 600 * MB
FUTURE, LATE = "skew:future_event_time", "late:event_time"
_MISSING = object()  # a field value meaning: leave the field out
_RAW = "@@raw@@"  # replaced by raw JSON text that orjson would not write (NaN, huge integers, bad escapes)
_FIRST_SIM = 300  # hostile messages go after this many simulated transactions: each partition has a watermark

_NOT_OBJECTS = (b"[]", b'"tx"', b"42", b"null", b"true", b"[{}]", b" ")
_BAD_AMOUNTS: tuple[Any, ...] = ("12.5", True, None, [1], {}, -0.01, -1e308, 1e308, 1e12 * (1 + 1e-9))
_TX_DEFECTS: list[tuple[dict[str, Any], str]] = [
    *[({name: _MISSING}, "missing_field") for name in ("transaction_id", "timestamp", "customer_id")],
    *[({name: _MISSING}, "missing_field") for name in ("terminal_id", "amount")],
    *[
        ({name: value}, "bad_field")
        for name in ("transaction_id", "customer_id", "terminal_id")
        for value in (123, "", "x" * 129, None, ["a"], {"a": 1}, True)
    ],
    *[({"currency": value}, "bad_field") for value in ("EURO", "E1R", 978, "", "€€€", ["EUR"])],
    *[({"amount": value}, "bad_amount") for value in _BAD_AMOUNTS],
    *[
        ({"timestamp": value}, "bad_timestamp")
        for value in (
            *(1767225600, None, "", "yesterday", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"),
            *("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2000-01-01T00:59:59+01:00"),
            *("2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:00", "2026-01-01"),
            *("2026-01-01 00:00:00Z", "2026-01-01T00:00:00+25:00", "2026-01-01T00:00:00Z" + " " * 21),
        )
    ],
]
_TX_RAW_DEFECTS: list[tuple[str, bytes, str]] = [
    *[("amount", text, "bad_json") for text in (b"NaN", b"Infinity", b"-Infinity", b"1e309", b"01", b".5")],
    *[("amount", text, "bad_json") for text in (b"+1", b"1.", b"0x10")],
    ("amount", b"123456789012345678901234567890", "bad_amount"),
    ("transaction_id", b'"\\ud800"', "bad_json"),  # a lone surrogate
    ("customer_id", b'"a\\udc00b"', "bad_json"),
    ("terminal_id", b'"\xed\xa0\x80"', "bad_json"),  # a surrogate encoded in UTF-8
    ("terminal_id", b'"\xc0\xaf"', "bad_json"),  # an overlong encoding of '/'
]
# Unusual but within the contract: each must be decided exactly once.
_TX_ODDITIES: list[dict[str, Any]] = [
    *[{"amount": value} for value in (0, 1e12, 5e-324, -0.0, 7)],
    *[{"currency": value} for value in ("eur", None, _MISSING)],
    *[{"customer_id": value} for value in ("\u202e\u200b😀", "\x00", "😀" * 128, "e\u0301" * 64)],
    {"terminal_id": "𝕿𝖊𝖗𝖒\u2028"},
    {"note": "x" * 60_000},
    {"is_fraud": True, "extra": [None, {}, [], 1e308, {"deep": {"er": [1, "\u0000"]}}]},
]
_TX_RAW_ODDITIES: list[tuple[str, bytes]] = [
    ("amount", b"1e-400"),
    ("amount", b"1E3"),
    ("nested", b"[" * 1000 + b"]" * 1000),  # just inside the parser's depth limit
]
_LABEL_DEFECTS: list[tuple[dict[str, Any], str]] = [
    *[
        ({name: _MISSING}, "missing_field")
        for name in ("is_fraud", "transaction_id", "customer_id", "timestamp")
    ],
    *[({"is_fraud": value}, "bad_field") for value in ("true", 1, 0, None, "yes")],
    *[
        ({name: value}, "bad_field")
        for name in ("transaction_id", "customer_id")
        for value in (5, "", "x" * 129)
    ],
    *[({"timestamp": value}, "bad_timestamp") for value in ("1999-12-31T23:59:59Z", 12345, "2026-01-01")],
]


@dataclass(frozen=True)
class Sent:
    """One message sent on purpose and what must happen to it.

    ``reason`` is its dead-letter reason; None means it is valid. A valid transaction carries what
    the checks need: its id, customer, event time, and the reason code its timestamp must raise.
    """

    key: bytes | None
    value: bytes | None
    reason: str | None = None
    transaction_id: str = ""
    customer_id: str = ""
    event_time: float = 0.0
    flag: str | None = None

    def pair(self) -> tuple[bytes | None, bytes | None]:
        return self.key, self.value


def test_hostile_input_is_dead_lettered_and_valid_input_decided_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(20)
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=3)
    items = simulated(3_000, seed=12)
    ids = itertools.count()
    traffic, hostile = _mix(rng, ids, items)
    bad_labels = _bad_labels(rng, ids, [item for item in items if isinstance(item, Transaction)])
    valid = [sent for sent in hostile if sent.reason is None]
    valid_ids = [tx.transaction_id for tx in items if isinstance(tx, Transaction)]
    valid_ids += [sent.transaction_id for sent in valid]
    pending_targets = rng.sample([sent for sent in valid if sent.flag is None], 150)
    late_labels = _label_checks(pending_targets)

    service = ServiceProcess(topics.env(kafka_bootstrap), tmp_path / "service.log")
    try:
        assert _wait_for_topic(service, topics)
        audit = CommittedReader(kafka_bootstrap, topics.audit)
        dead = CommittedReader(kafka_bootstrap, topics.dead_letter)
        with RssSampler(service.process.pid) as memory:
            publish(topics.settings(kafka_bootstrap), traffic)
            publish(
                topics.settings(kafka_bootstrap),
                [sent.pair() for sent in bad_labels],
                raw_topic=topics.labels,
            )
            wait_until(
                lambda: decided(audit) >= len(valid_ids), 240, "a decision for every valid transaction"
            )
            # Label checks need their transaction scored and still waiting for its label: only now.
            publish(
                topics.settings(kafka_bootstrap),
                [sent.pair() for sent in late_labels],
                raw_topic=topics.labels,
            )
            expected = _expected_dead_letters(topics, hostile, [*bad_labels, *late_labels])

            def dead_lettered() -> bool:
                dead.drain(0.5)
                return dead.count() >= expected.total()

            wait_until(dead_lettered, 120, "every dead letter")
            assert service.alive() and not memory.exited, "the service died on hostile input"
    finally:
        code = service.stop()
    assert code == 0
    dead.drain_to_end()
    audit.drain_to_end()

    assert _dead_letters(dead) == expected
    decisions = audit_decisions(audit)
    assert decisions == Counter(valid_ids), "each valid transaction decided exactly once"
    records = [orjson.loads(value) for records in audit.records.values() for _, value, _ in records]
    assert sum(record["record_type"] == "rejected" for record in records) == expected.total()
    reasons = {r["transaction_id"]: r["reason_codes"] for r in records if r["record_type"] == "decision"}
    flagged = [sent for sent in valid if sent.flag is not None]
    assert flagged and all(sent.flag in reasons[sent.transaction_id] for sent in flagged)
    assert memory.peak() < RSS_LIMIT
    by_reason = Counter(reason for _, _, reason in expected.elements())
    print(
        f"\n{len(hostile) - len(valid):,} bad and {len(valid)} odd-but-valid transaction messages,"
        f" {len(bad_labels) + len(late_labels):,} hostile label messages, among"
        f" {len(items):,} simulated ones; {expected.total():,} dead letters, each with its reason"
        f" ({dict(by_reason.most_common())}); {sum(decisions.values()):,} decisions, each once;"
        f" service RSS over {len(memory.samples)} samples: {summary_mb([rss for _, rss in memory.samples])}"
        f" (limit {RSS_LIMIT // MB} MB)"
    )


def _mix(
    rng: random.Random, ids: Iterator[int], items: Sequence[Transaction | Label]
) -> tuple[list[Transaction | Label | tuple[bytes | None, bytes | None]], list[Sent]]:
    """The simulated stream with hostile transactions spread through it; returns (stream, hostile).

    A valid hostile transaction takes the key and time of the simulated one it precedes, so it
    lands in that partition: a far-future one is always followed by a normal one there, and never
    three in a row move the watermark (which would expire what the duplicates below rely on).
    """
    simulated_txs = [item for item in items if isinstance(item, Transaction)]
    before: dict[int, list[Sent]] = {}
    later = range(_FIRST_SIM, len(simulated_txs))
    hostile = _bad_transactions(rng, ids, [tx.timestamp for tx in simulated_txs])
    for sent in hostile:
        before.setdefault(rng.choice(later), []).append(sent)
    for position, oddity in zip(rng.sample(later, 8 * len(_ODDITY_MAKERS)), _ODDITY_MAKERS * 8, strict=True):
        sent = oddity(next(ids), simulated_txs[position])
        hostile.append(sent)
        before.setdefault(position, []).append(sent)
    # Duplicates: the exact bytes again, with the same key (so the same partition), after the original.
    originals = [(i, Sent(tx.customer_id.encode(), tx.to_json())) for i, tx in enumerate(simulated_txs)]
    originals += [(i, sent) for i, sents in before.items() for sent in sents if sent.reason is None]
    for i, original in rng.sample([o for o in originals if o[0] >= _FIRST_SIM and o[1].flag is None], 180):
        duplicate = Sent(original.key, original.value, "duplicate_transaction")
        hostile.append(duplicate)
        before.setdefault(rng.randint(i + 1, len(simulated_txs)), []).append(duplicate)
    stream: list[Transaction | Label | tuple[bytes | None, bytes | None]] = []
    position = 0
    for item in items:
        if isinstance(item, Transaction):
            stream.extend(sent.pair() for sent in before.get(position, ()))
            position += 1
        stream.append(item)
    stream.extend(sent.pair() for sent in before.get(position, ()))
    return stream, hostile


def _bad_transactions(rng: random.Random, ids: Iterator[int], timestamps: Sequence[str]) -> list[Sent]:
    """About 2,000 transaction messages the contract refuses, each with the reason it must give."""

    def body(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return _transaction(next(ids), rng.choice(timestamps), changes)

    def sent(value: bytes | None, reason: str) -> Sent:
        return Sent(_random_key(rng), value, reason)

    out = [sent(b"\xff" + rng.randbytes(rng.randrange(4096)), "bad_json") for _ in range(800)]
    for _ in range(300):
        text = orjson.dumps(body())
        out.append(sent(text[: rng.randrange(1, len(text))], "bad_json"))
    for _ in range(5):
        out += [sent(None, "empty_payload"), sent(b"", "bad_json")]
        out += [sent(value, "bad_json") for value in _NOT_OBJECTS]
        out.append(sent(b"\xef\xbb\xbf" + orjson.dumps(body()), "bad_json"))  # a byte-order mark
    for _ in range(10):
        out += [sent(orjson.dumps(body(changes)), reason) for changes, reason in _TX_DEFECTS]
        out += [sent(_with_raw(body(), name, text), reason) for name, text, reason in _TX_RAW_DEFECTS]
    for _ in range(100):  # nested deeper than the parser allows, yet under the size limit
        depth = rng.randrange(1_100, 30_000)
        out.append(sent(_with_raw(body(), "nested", b"[" * depth + b"]" * depth), "bad_json"))
    for size in [MAX_PAYLOAD_BYTES + 1, *(rng.randrange(MAX_PAYLOAD_BYTES + 1, 900_000) for _ in range(39))]:
        value = _padded(body(), size) if size % 2 else b"[" * size
        out.append(sent(value, "oversized_payload"))
    return out


OddityMaker = Callable[[int, Transaction], Sent]


def _oddity(changes: dict[str, Any] | None = None, raw: tuple[str, bytes] | None = None) -> OddityMaker:
    """A maker of one valid-but-odd transaction, placed just before ``tx`` with its key and time."""

    def make(n: int, tx: Transaction) -> Sent:
        body = _transaction(n, tx.timestamp, changes)
        value = orjson.dumps(body) if raw is None else _with_raw(body, *raw)
        return _valid(tx, body, value)

    return make


def _longest_id(n: int, tx: Transaction) -> Sent:
    """An id of exactly the longest length allowed, in characters that take 4 bytes each."""
    body = _transaction(n, tx.timestamp)
    body["transaction_id"] += "😀" * (MAX_ID_LENGTH - len(body["transaction_id"]))
    return _valid(tx, body, orjson.dumps(body))


def _exact_size(n: int, tx: Transaction) -> Sent:
    """Exactly at the size limit, which is allowed."""
    body = _transaction(n, tx.timestamp)
    return _valid(tx, body, _padded(body, MAX_PAYLOAD_BYTES))


def _timed(timestamp: str, flag: str) -> OddityMaker:
    """A maker of a valid transaction stamped ``timestamp``, whose decision must carry ``flag``."""

    def make(n: int, tx: Transaction) -> Sent:
        body = _transaction(n, timestamp)
        return replace(_valid(tx, body, orjson.dumps(body)), flag=flag)

    return make


def _valid(tx: Transaction, body: dict[str, Any], value: bytes) -> Sent:
    """Keyed like ``tx``, which it precedes, so it lands in that partition at the same event time."""
    key = tx.customer_id.encode()
    return Sent(key, value, None, body["transaction_id"], body["customer_id"], tx.event_time)


_ODDITY_MAKERS: list[OddityMaker] = [
    *[_oddity(changes) for changes in _TX_ODDITIES],
    *[_oddity(raw=raw) for raw in _TX_RAW_ODDITIES],
    _longest_id,
    _exact_size,
    _timed("2000-01-01T00:00:00Z", LATE),
    _timed("2099-12-31T23:59:59Z", FUTURE),
]


def _bad_labels(rng: random.Random, ids: Iterator[int], txs: Sequence[Transaction]) -> list[Sent]:
    """Label messages the contract refuses, and labels for transactions nobody sent (accepted)."""

    def body(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return _label(f"ghost-{next(ids)}", "ghost", rng.choice(txs).event_time, changes)

    out = [
        Sent(_random_key(rng), b"\xff" + rng.randbytes(rng.randrange(2048)), "bad_json") for _ in range(150)
    ]
    for _ in range(10):
        out.append(Sent(_random_key(rng), None, "empty_payload"))
        out += [Sent(_random_key(rng), orjson.dumps(body(c)), reason) for c, reason in _LABEL_DEFECTS]
    out += [Sent(_random_key(rng), _padded(body(), 100_000), "oversized_payload") for _ in range(5)]
    out += [Sent(_random_key(rng), orjson.dumps(body())) for _ in range(100)]  # unknown transactions
    return out


def _label_checks(targets: Sequence[Sent]) -> list[Sent]:
    """Labels for scored transactions still waiting for their label: wrong customer, before the
    transaction (both refused), and a right label sent twice (accepted: a repeat is only counted).

    Keyed like their transaction, so they reach its partition.
    """
    out = []
    for i, target in enumerate(targets):
        tx_id, customer, when = target.transaction_id, target.customer_id, target.event_time
        if i % 5 < 2:
            out.append(Sent(target.key, orjson.dumps(_label(tx_id, "someone-else", when)), "label_mismatch"))
        elif i % 5 < 4:
            early = orjson.dumps(_label(tx_id, customer, when - 3600))
            out.append(Sent(target.key, early, "label_before_transaction"))
        else:
            out += [Sent(target.key, orjson.dumps(_label(tx_id, customer, when + 3600)))] * 2
    return out


def _expected_dead_letters(
    topics: ServiceTopics, transactions: Sequence[Sent], labels: Sequence[Sent]
) -> Counter[tuple[str, str, str]]:
    """What ``_dead_letters`` must find: one per refused message, by input topic, bytes and reason."""
    expected: Counter[tuple[str, str, str]] = Counter()
    for topic, messages in ((topics.transactions, transactions), (topics.labels, labels)):
        expected.update(
            (topic, _digest(sent.value or b""), sent.reason) for sent in messages if sent.reason is not None
        )
    return expected


def _dead_letters(reader: CommittedReader) -> Counter[tuple[str, str, str]]:
    """(input topic, digest of the original bytes, reason) of every dead letter."""
    found: Counter[tuple[str, str, str]] = Counter()
    for records in reader.records.values():
        for _, value, headers in records:
            header = {name: raw.decode() for name, raw in headers}
            found[header["dlq.topic"], _digest(value), header["dlq.reason"]] += 1
    return found


def _transaction(n: int, timestamp: str, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A valid transaction body with ``changes`` applied (``_MISSING`` removes a field)."""
    body = {
        "transaction_id": f"h-{n}",
        "timestamp": timestamp,
        "customer_id": f"h-card-{n}",
        "terminal_id": "h-terminal",
        "amount": 12.5,
        "currency": "EUR",
        **(changes or {}),
    }
    return {name: value for name, value in body.items() if value is not _MISSING}


def _label(
    transaction_id: str, customer_id: str, event_time: float, changes: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body = {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "is_fraud": False,
        "timestamp": format_timestamp(event_time),
        **(changes or {}),
    }
    return {name: value for name, value in body.items() if value is not _MISSING}


def _with_raw(body: dict[str, Any], name: str, text: bytes) -> bytes:
    """``body`` as JSON with field ``name`` written as the raw ``text``."""
    return orjson.dumps({**body, name: _RAW}).replace(orjson.dumps(_RAW), text)


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes, padded with an extra field."""
    short = len(orjson.dumps({**body, "pad": ""}))
    value = orjson.dumps({**body, "pad": "x" * (size - short)})
    assert len(value) == size
    return value


def _random_key(rng: random.Random) -> bytes | None:
    return rng.choice([None, b"", rng.randbytes(rng.randrange(1, 64)), "ключ-😀\x00".encode()])


def _digest(value: bytes) -> str:
    return hashlib.blake2b(value, digest_size=16).hexdigest()
