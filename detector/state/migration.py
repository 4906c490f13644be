"""Moving the state of an engine restored from a snapshot of the in-memory layout onto disk.

Checkpoints written before the state moved to disk (or with ``FRAUD_STATE_DIR`` empty) hold every
store by value. Restored as they are, their entries are moved into the partition's database, so
the upgrade keeps the state warm; the next checkpoint writes them all, once.
"""

from __future__ import annotations

from detector.engine.engine import DetectionEngine
from detector.engine.expiring import ExpiringStore
from detector.engine.learner import SharedLearner
from detector.engine.scorer import Scorer
from detector.state.database import StateDatabase
from detector.state.stored import StoredExpiringStore


def move_to_disk(engine: DetectionEngine | Scorer | SharedLearner, database: StateDatabase) -> int:
    """Put ``engine``'s in-memory stores into the (empty) ``database``; returns the entries moved.

    An engine of the same configuration built on ``database`` names and encodes each store; its
    stores take the old ones' entries and replace them in ``engine``.
    """
    fresh: DetectionEngine | Scorer | SharedLearner
    if isinstance(engine, DetectionEngine):
        fresh = DetectionEngine(engine.config, database)  # its terminal table on disk too
    elif isinstance(engine, Scorer):
        fresh = Scorer(engine.config, engine.partition, database)
    else:
        fresh = SharedLearner(engine.config, len(engine.closed), database)
    moved = 0
    for (old_holder, name), (new_holder, _) in zip(_holders(engine), _holders(fresh), strict=True):
        old, new = getattr(old_holder, name), getattr(new_holder, name)
        if isinstance(old, ExpiringStore) and isinstance(new, StoredExpiringStore):
            new.fill_from(old)
            setattr(old_holder, name, new)
            moved += len(new)
    return moved


def _holders(engine: DetectionEngine | Scorer | SharedLearner) -> list[tuple[object, str]]:
    """(object, attribute) of each store the engine keeps on disk."""
    holders: list[tuple[object, str]] = []
    scorer = engine.scorer if isinstance(engine, DetectionEngine) else engine
    if isinstance(scorer, Scorer):
        holders += [(scorer.extractor, "cards"), (scorer.index, "_waiting"), (scorer.index, "_labelled")]
    learner = engine.learner if isinstance(engine, DetectionEngine) else engine
    if isinstance(learner, SharedLearner):
        holders += [
            (learner.pending, "_waiting"),
            (learner.pending, "_labelled"),
            (learner.terminals, "terminals"),
        ]
    return holders
