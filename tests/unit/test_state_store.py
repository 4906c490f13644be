"""State on disk keeps the in-memory rules exactly, so moving the engine's state to RocksDB (and
restarting from a snapshot and a reopened database) never changes a decision."""

from __future__ import annotations

import itertools
import random
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.expiring import ExpiringStore, KeyedState
from detector.engine.features import CardCodec, FeatureConfig, FeatureExtractor
from detector.engine.labels import PendingCodec, PendingScore
from detector.engine.records import Label, Transaction
from detector.engine.scorer import ScoredCodec
from detector.engine.snapshots import pickled, unpickled
from detector.engine.terminals import TerminalTable
from detector.state.database import StateDatabase
from tests.unit.test_engine import feed

T0, HOUR = 1_700_000_000.0, 3600.0
# Small bounds, so cards, terminals and pending scores are evicted both for size and for age.
CONFIG = EngineConfig(
    features=FeatureConfig(
        max_cards=12,
        max_terminals=5,
        card_windows=(600.0, HOUR),
        terminal_windows=(HOUR,),
        risk_windows=(2 * HOUR,),
    ),
    max_pending=32,
    label_horizon=3000.0,
)


def lossy_stream(n: int, seed: int) -> list[Transaction | Label]:
    """About a minute apart, some out of order, odd amounts (so float sums show any lost update),
    a 3-hour lull every 700 (idle state expires), a fifth of the labels never come, and a few hot
    cards among many seen once in a while (so some cards stay, with long histories)."""
    rng = random.Random(seed)
    items: list[tuple[float, int, Transaction | Label]] = []
    arrival = T0
    for i in range(n):
        arrival += rng.uniform(20.0, 100.0) + (3 * HOUR if i % 700 == 699 else 0.0)
        stamped = arrival - rng.uniform(0.0, 120.0)
        fraud = rng.random() < 0.08
        card = f"hot{rng.randrange(6)}" if rng.random() < 0.6 else f"c{rng.randrange(40)}"
        amount = round(rng.uniform(300.0, 1500.0) if fraud else rng.lognormvariate(3.0, 1.0), 2)
        items.append((arrival, 0, Transaction(f"t{i}", stamped, card, f"m{rng.randrange(8)}", amount)))
        if rng.random() < 0.8:
            known = stamped + rng.uniform(600.0, 2400.0)
            items.append((known, 1, Label(f"t{i}", card, fraud, known)))
    return [item for _, _, item in sorted(items, key=lambda entry: (entry[0], entry[1]))]


def counters(engine: DetectionEngine) -> dict[str, tuple[int, int]]:
    """(evicted for age, evicted for size) of the engine's stores."""
    stores: dict[str, KeyedState[Any]] = {"cards": engine.extractor.cards, "pending": engine.pending._waiting}
    stores["scored"], stores["terminals"] = engine.scorer.index._waiting, engine.learner.terminals.terminals
    return {name: (store.evicted_for_age, store.evicted_for_size) for name, store in stores.items()}


class IntCodec:
    def encode(self, value: int) -> bytes:
        return str(value).encode()

    def decode(self, data: bytes) -> int:
        return int(data)


@dataclass
class Holder:
    """What a snapshot would hold: something referring to a store on disk."""

    store: Any


names = itertools.count()
keys = st.sampled_from("abcdef")
times = st.integers(0, 200).map(lambda quarter: quarter / 4)  # ties, reorderings, gaps beyond the ttl
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, times),
        st.tuples(st.sampled_from(["get", "in", "pop"]), keys),
        st.tuples(st.just("evict"), times),
        st.tuples(st.sampled_from(("drain",) * 11 + ("restart",))),  # reopening costs 10-40 ms
    ),
    min_size=20,  # hypothesis would otherwise draw lists of about five
    max_size=100,
)


@pytest.fixture(scope="module")
def shared() -> Iterator[list[StateDatabase]]:
    """One database for all examples, a store of its own each: opening one costs more than an example."""
    with tempfile.TemporaryDirectory() as directory:
        box = [StateDatabase(Path(directory) / "db")]
        yield box
        box[0].close()


@settings(max_examples=150, deadline=None)
@given(ops=operations, max_entries=st.integers(1, 4), cache=st.integers(1, 3))
def test_a_stored_store_answers_exactly_as_the_store_in_memory(
    shared: list[StateDatabase], ops: list[tuple[Any, ...]], max_entries: int, cache: int
) -> None:
    """Every answer of the in-memory store (the reference) is the disk store's, across a tiny
    cache, drains and restarts from a snapshot and a reopened database."""
    reference = ExpiringStore[int](ttl=10.0, max_entries=max_entries)
    shared[0].cache_entries = cache
    stored: KeyedState[int] = shared[0].expiring(f"s{next(names)}", 10.0, max_entries, IntCodec())
    for step, (kind, *args) in enumerate(ops):
        if kind == "put":
            reference.put(args[0], step, args[1])
            stored.put(args[0], step, args[1])
        elif kind in ("get", "pop", "evict"):
            assert getattr(stored, kind)(*args) == getattr(reference, kind)(*args), (step, kind)
        elif kind == "in":
            assert (args[0] in stored) == (args[0] in reference), step
        else:
            db = shared[0]
            changes = db.drain()
            snapshot = pickled(Holder(stored), b"x\n", db)
            db.write(changes, "lineage", f"c{step}")
            if kind == "restart":
                db.close()
                shared[0] = db = StateDatabase(db.path, cache_entries=cache)
                stored = unpickled(snapshot, b"x\n", Holder, db).store
        assert len(stored) == len(reference), step
        assert stored.evicted_for_age == reference.evicted_for_age, step
        assert stored.evicted_for_size == reference.evicted_for_size, step
    for key in "abcdef":
        assert (key in stored, stored.get(key)) == (key in reference, reference.get(key))


def checkpoint(db: StateDatabase, engine: DetectionEngine, lineage: str, checkpoint_id: str) -> bytes:
    """The service's cycle: drain, snapshot, write; returns the snapshot."""
    changes = db.drain()
    snapshot = engine.snapshot(db)
    db.write(changes, lineage, checkpoint_id)
    return snapshot


@pytest.mark.parametrize("cache", [0, 3])  # 0: the card just read must still be the one written back
def test_the_engine_on_disk_decides_exactly_as_in_memory_across_restarts(tmp_path: Path, cache: int) -> None:
    """Every store evicts for size and for age (the counters prove it); a restart every other
    checkpoint, from the snapshot and the reopened database."""
    items = lossy_stream(2400, seed=5)
    memory = DetectionEngine(CONFIG)
    db = StateDatabase(tmp_path / "p0", cache_entries=cache)
    disk = DetectionEngine(CONFIG, db)
    for n, start in enumerate(range(0, len(items), 400)):
        chunk = items[start : start + 400]
        assert feed(disk, chunk) == feed(memory, chunk), f"chunk {n}"
        snapshot = checkpoint(db, disk, "lineage", f"c{n}")
        if n % 2:
            db.close()
            db = StateDatabase(tmp_path / "p0", cache_entries=cache)
            disk = DetectionEngine.restore(snapshot, db)
    assert disk.stats == memory.stats and disk.gauges() == memory.gauges()
    assert counters(disk) == counters(memory)
    for name in ("cards", "pending", "terminals"):
        age, size = counters(memory)[name]
        assert age > 0 and size > 0, (name, age, size)
    assert memory.stats["pending_expired"] > 0 and memory.model.labels_learned > 500
    # Terminal windows are trimmed in place after they are read: on disk too, so they stay bounded.
    table, stored = memory.learner.terminals.terminals, disk.learner.terminals.terminals
    assert isinstance(table, ExpiringStore)
    checkpoint(db, disk, "lineage", "last")
    terminals = list(table.keys())
    assert terminals
    for key in terminals:
        kept, read = table.get(key), stored.get(key)
        assert read is not None and kept is not None
        assert (read.windows.to_bytes(), read.labels.to_bytes()) == (
            kept.windows.to_bytes(),
            kept.labels.to_bytes(),
        )
    db.close()


def test_a_rebuilt_database_continues_exactly_like_the_original(tmp_path: Path) -> None:
    """The changelog (every drain's changes, in order) is enough to rebuild the state on disk."""
    items = lossy_stream(1600, seed=8)
    cut = 2 * len(items) // 3
    original = StateDatabase(tmp_path / "original", cache_entries=2)
    lineage = original.reset()
    engine = DetectionEngine(CONFIG, original)
    changelog = []
    for n, start in enumerate(range(0, cut, 300)):
        feed(engine, items[start : min(start + 300, cut)])
        changes = original.drain()
        changelog.extend(changes)
        snapshot = engine.snapshot(original)
        original.write(changes, lineage, f"c{n}")
    rebuilt = StateDatabase(tmp_path / "rebuilt", cache_entries=2)
    assert rebuilt.rebuild(changelog, lineage, f"c{n}") == len(changelog)
    assert rebuilt.is_current(lineage, f"c{n}")
    assert not rebuilt.is_current("another-lineage", f"c{n}")
    assert not rebuilt.is_current(lineage, f"c{n - 1}")
    assert list(rebuilt.scan(b"", b"")) == list(original.scan(b"", b""))
    follower = DetectionEngine.restore(snapshot, rebuilt)
    assert feed(follower, items[cut:]) == feed(engine, items[cut:])
    assert follower.stats == engine.stats and counters(follower) == counters(engine)
    original.close()
    rebuilt.close()


def test_a_snapshot_referring_to_disk_cannot_be_restored_without_its_database(tmp_path: Path) -> None:
    """It holds references to the stores, not their entries: restored in memory it must fail, not
    start empty."""
    db = StateDatabase(tmp_path / "p0")
    engine = DetectionEngine(CONFIG, db)
    feed(engine, lossy_stream(50, seed=1))
    snapshot = checkpoint(db, engine, "lineage", "c0")
    with pytest.raises(ValueError, match="refers to state on disk"):
        DetectionEngine.restore(snapshot)
    db.close()


@pytest.mark.parametrize("with_frauds", [False, True])
def test_a_card_reads_back_with_the_same_windows_frauds_and_terminals(with_frauds: bool) -> None:
    """Read back, a card gives the same features now and expires the same way later."""
    features = CONFIG.features
    extractor, terminals = FeatureExtractor(features), TerminalTable(features)
    rng = random.Random(2)
    for i in range(40):
        at = T0 + 70.0 * i + rng.uniform(0, 30)
        extractor.learn_one(Transaction(f"t{i}", at, "card", f"m{i % 6}", round(rng.uniform(1, 90), 3)))
        if with_frauds and i % 9 == 0:
            extractor.learn_label("card", True, at + 1.0)
    codec = CardCodec(features)
    card = extractor.cards.get("card")
    assert card is not None and card.last_time is not None
    assert (card.frauds is not None) == with_frauds and len(card.terminals) == 6
    probe = Transaction("probe", card.last_time + 5.0, "card", "m1", 42.0)
    other = FeatureExtractor(features)
    other.cards.put("card", codec.decode(codec.encode(card)), card.last_time)
    assert other.transform_one(probe, terminals) == extractor.transform_one(probe, terminals)
    decoded = codec.decode(codec.encode(card))  # reading expired the same buckets in both
    other_card = other.cards.get("card")
    assert other_card is not None
    assert codec.encode(decoded) == codec.encode(card) == codec.encode(other_card)
    assert decoded.last_time == card.last_time
    assert decoded.terminals.export() == card.terminals.export()
    assert list(decoded.terminals.keys()) == list(card.terminals.keys())  # order of last touch
    for later in (5.0, 600.0, 1800.0, HOUR, 3 * HOUR):
        at = card.last_time + later
        assert decoded.windows.read(at) == card.windows.read(at)
        if with_frauds:
            assert decoded.frauds is not None and card.frauds is not None
            assert decoded.frauds.read(at) == card.frauds.read(at)
        assert decoded.terminals.evict(at) == card.terminals.evict(at)
        assert list(decoded.terminals.keys()) == list(card.terminals.keys())


def test_a_card_known_only_by_a_fraud_label_reads_back() -> None:
    """No transaction yet: no last time (NaN on disk), no terminals, one fraud."""
    extractor, codec = FeatureExtractor(CONFIG.features), CardCodec(CONFIG.features)
    extractor.learn_label("card", True, T0)
    card = extractor.cards.get("card")
    assert card is not None and card.frauds is not None
    decoded = codec.decode(codec.encode(card))
    assert decoded.last_time is None and len(decoded.terminals) == 0 and decoded.frauds is not None
    assert decoded.frauds.read(T0 + 60.0) == card.frauds.read(T0 + 60.0) == [(1, 1.0, 1.0)]


ids, booleans, generations = st.text(max_size=12), st.booleans(), st.integers(-(2**63), 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
vectors = st.lists(finite, max_size=30).map(lambda values: array("d", values))
pending_scores = st.builds(PendingScore, finite, ids, ids, booleans, generations, vectors)


@given(pending_scores)
def test_a_pending_score_reads_back_equal(pending: PendingScore) -> None:
    """The model learns from exactly the vector it scored, whatever the ids hold."""
    decoded = PendingCodec().decode(PendingCodec().encode(pending))
    assert decoded == pending and type(decoded.features) is array and decoded.features.typecode == "d"


@given(finite, ids)
def test_a_scored_entry_reads_back_equal(event_time: float, customer: str) -> None:
    decoded = ScoredCodec().decode(ScoredCodec().encode((event_time, customer)))
    assert decoded == (event_time, customer) and type(decoded) is tuple
