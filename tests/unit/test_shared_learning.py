"""Shared learning: scorers, one learner and views agree, whatever the partitioning and interleaving."""

from __future__ import annotations

import random
from array import array

import pytest

from detector.backtest.routing import partition_for
from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.expiring import ExpiringStore
from detector.engine.learner import SharedLearner
from detector.engine.records import InvalidInput, Label, Transaction
from detector.engine.scorer import Scorer
from detector.engine.shared import EpochClosed, Labelled, Scored, SharingConfig
from detector.engine.topology import ScaledTopology
from detector.engine.view import SharedView
from detector.engine.wire import decode_updates, decode_version, encode_updates, encode_version

T0 = 1_700_000_000.0
CONFIG = EngineConfig(sharing=SharingConfig(epoch=600.0), label_horizon=86400.0)


def stream(n: int, seed: int) -> list[Transaction | Label]:
    """Transactions 20 s apart at a few shared terminals, each labelled an hour later, in event time."""
    rng = random.Random(seed)
    items: list[tuple[float, int, Transaction | Label]] = []
    for i in range(n):
        t = T0 + 20.0 * i
        terminal = rng.randrange(6)
        fraud = terminal == 0 and rng.random() < 0.5
        card = f"c{rng.randrange(60)}"
        items.append((t, 0, Transaction(f"t{i}", t, card, f"m{terminal}", 800.0 if fraud else 30.0)))
        items.append((t + 3600.0, 1, Label(f"t{i}", card, fraud, t + 3600.0)))
    return [item for _, _, item in sorted(items, key=lambda entry: (entry[0], entry[1]))]


def decisions_of(topology: ScaledTopology, events: list[Transaction | Label]) -> dict[str, tuple]:
    outcomes = [outcome for event in events for outcome in topology.feed(event)] + topology.finish()
    return {
        o.decision.transaction.transaction_id: (
            o.decision.score,
            o.decision.model_version,
            o.decision.features,
        )
        for o in outcomes
        if o.decision is not None
    }


def random_merge(events: list[Transaction | Label], partitions: int, seed: int) -> list[Transaction | Label]:
    rng = random.Random(seed)
    queues = [[e for e in events if partition_for(e.customer_id, partitions) == p] for p in range(partitions)]
    merged: list[Transaction | Label] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        take = rng.randrange(1, 40)
        merged.extend(queue[:take])
        del queue[:take]
    return merged


def test_one_partition_decides_exactly_as_the_engine() -> None:
    events = stream(900, seed=1)
    engine = DetectionEngine(CONFIG)
    expected = {}
    for event in events:
        if type(event) is Transaction:
            d = engine.process_transaction(event)
            expected[d.transaction.transaction_id] = (d.score, d.model_version, d.features)
        else:
            engine.process_label(event)
    assert decisions_of(ScaledTopology(CONFIG, 1), events) == expected
    assert engine.model.labels_learned > 500


def test_three_partitions_decide_the_same_whatever_the_interleaving_and_the_view() -> None:
    events = stream(900, seed=2)
    in_time = decisions_of(ScaledTopology(CONFIG, 3), events)
    for seed in (1, 2):
        assert decisions_of(ScaledTopology(CONFIG, 3), random_merge(events, 3, seed)) == in_time
    assert decisions_of(ScaledTopology(CONFIG, 3, replica=True), random_merge(events, 3, 3)) == in_time
    assert len(in_time) == 900


def test_the_view_equals_the_learners_table_after_its_versions() -> None:
    topology = ScaledTopology(CONFIG, 3, replica=True)
    decisions_of(topology, stream(600, seed=3))
    assert topology.replica is not None
    learner, view = topology.learner.terminals, topology.replica.terminals
    assert isinstance(learner.terminals, ExpiringStore) and isinstance(view.terminals, ExpiringStore)
    assert list(learner.terminals.keys()) == list(view.terminals.keys()) and len(view) == 6
    for key in list(learner.terminals.keys()):
        mine, theirs = learner.terminals.get(key), view.terminals.get(key)
        assert mine is not None and theirs is not None
        assert mine.windows._data == theirs.windows._data and mine.labels._data == theirs.labels._data
    assert topology.view.version == topology.learner.version
    exported = SharedView.restore(topology.learner.export_view().snapshot())
    assert exported.version == topology.learner.version
    mine, theirs = learner.terminals.get("m0"), exported.terminals.terminals.get("m0")
    assert mine is not None and theirs is not None and theirs.windows._data == mine.windows._data


def _updates(seed: int) -> list[list]:
    """Two partitions' updates of two epochs, each partition's in its own order."""
    rng = random.Random(seed)
    names = len(SharedLearner(CONFIG).names)
    per_partition: list[list] = [[], []]
    for i in range(200):
        epoch, t = 10 + i // 100, 6000.0 + 6.0 * i
        vector = array("d", [rng.random() for _ in range(names)])
        per_partition[i % 2].append(
            Scored(epoch, f"t{i}", f"c{i % 2}", f"m{i % 3}", t, 10.0, 0.2, False, 1, vector)
        )
        if i >= 20:
            per_partition[(i - 20) % 2].append(Labelled(epoch, f"t{i - 20}", f"c{i % 2}", i % 7 == 0, t))
    for updates in per_partition:
        rng.shuffle(updates)  # within a partition the learner must not care either
    return [[*updates, EpochClosed(p, 11)] for p, updates in enumerate(per_partition)]


def test_the_learner_applies_an_epoch_in_canonical_order_whatever_the_arrival() -> None:
    versions = []
    for seed, order in ((1, (0, 1)), (1, (1, 0)), (2, (0, 1))):
        learner = SharedLearner(CONFIG, partitions=2)
        batches = _updates(seed)
        for partition in order:
            learner.submit(batches[partition])
        version = learner.apply_ready()
        assert version is not None and version.epoch == 11
        probe = dict(zip(learner.names, [1.0] * len(learner.names), strict=True))
        versions.append((version.terminal_changes, learner.model.predict_proba_one(probe), learner.stats))
    assert versions[0] == versions[1] and versions[0][2]["labels_joined"] == 180


def test_wire_round_trip_of_updates_and_versions() -> None:
    batch = _updates(3)[0]
    assert decode_updates(encode_updates(batch)) == batch
    learner = SharedLearner(CONFIG, partitions=2)
    for updates in _updates(3):
        learner.submit(updates)
    version = learner.apply_ready()
    assert version is not None and version.model is not None
    decoded = decode_version(encode_version(version))
    assert decoded.terminal_changes == version.terminal_changes and decoded.events == version.events
    probe = dict.fromkeys(learner.names, 0.5)
    assert decoded.model is not None
    assert decoded.model.predict_proba_one(probe) == version.model.predict_proba_one(probe)
    view = SharedView(CONFIG.features, CONFIG.model)
    assert view.apply(decoded) and not view.apply(decoded) and view.version == 11
    with pytest.raises(ValueError, match="not a shared version"):
        decode_version(encode_updates(batch))


def test_labels_are_refused_at_once_though_the_learner_has_not_seen_the_transaction() -> None:
    scorer, learner = Scorer(CONFIG), SharedLearner(CONFIG)
    first = Transaction("t1", T0, "c1", "m1", 5.0)
    scorer.close_through(scorer.required_version(first))
    learner.submit(scorer.pop_updates())
    learner.apply_ready()
    scorer.process_transaction(first, learner)
    with pytest.raises(InvalidInput, match="label_mismatch"):
        scorer.process_label(Label("t1", "c2", True, T0 + 10))
    with pytest.raises(InvalidInput, match="label_before_transaction"):
        scorer.process_label(Label("t1", "c1", True, T0 - 10))
    with pytest.raises(InvalidInput, match="duplicate_transaction"):
        scorer.process_transaction(Transaction("t1", T0 + 5, "c1", "m1", 5.0), learner)
    assert [type(u) for u in scorer.pop_updates()] == [Scored] and len(learner.pending) == 0


def test_vectors_never_labelled_expire_at_the_horizon_and_are_counted() -> None:
    learner = SharedLearner(CONFIG)
    names = len(learner.names)
    scored = [
        Scored(0, f"t{i}", "c", "m", float(i), 1.0, 0.1, False, 1, array("d", [0.0] * names))
        for i in range(50)
    ]
    learner.submit([*scored, EpochClosed(0, 0)])
    learner.apply_ready()
    assert len(learner.pending) == 50
    late = 2 * CONFIG.label_horizon
    learner.submit([Labelled(300, "t3", "c", True, late), EpochClosed(0, 300)])
    learner.apply_ready()
    assert learner.stats["pending_expired"] == 50 and learner.stats["labels_unjoined"] == 1
    assert len(learner.pending) == 0 and learner.model.labels_learned == 0


def test_the_epoch_is_validated_and_shapes_the_state() -> None:
    assert EngineConfig.from_dict({"sharing": {"epoch": "1h"}}).sharing.epoch == 3600.0
    with pytest.raises(ValueError, match=r"sharing\.epoch"):
        EngineConfig.from_dict({"sharing": {"epoch": 0}})
    with pytest.raises(ValueError, match="another sharing"):
        DetectionEngine().reconfigure(EngineConfig(sharing=SharingConfig(epoch=3600.0)))
