"""Where each owned partition's state database lives on local disk, opening it, and restoring a
checkpoint's engine with it (docs/state.md).

``FRAUD_STATE_DIR/<instance id>/<partition>``: one RocksDB per partition, owned by one process.
Another process of the same instance id (a zombie being fenced, or one taking over) may still
hold a partition's database locked; the newcomer then opens a fresh directory beside it and
rebuilds the state from the changelog, which is correct, only slower (``state_dir_locked``).
Such a spare directory is deleted when its database is closed, and, if its process was killed,
by the next process of the instance to start, once no process holds it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import structlog
from confluent_kafka import Consumer

from detector.engine.engine import DetectionEngine
from detector.engine.expiring import IN_MEMORY, StateStores
from detector.engine.learner import SharedLearner
from detector.engine.scorer import Scorer
from detector.service.checkpoints import Checkpoint, read_state_changes
from detector.service.settings import ServiceSettings
from detector.state.database import StateDatabase
from detector.state.migration import move_to_disk

log = structlog.get_logger("detector.service")
T = TypeVar("T", bound=DetectionEngine | Scorer | SharedLearner)  # what a checkpoint restores
_SPARE = ".spare-"  # a directory opened because the partition's own was locked


class StateFiles:
    """Opens the state database of a partition under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._delete_abandoned_spares()

    def open(self, partition: int | str) -> StateDatabase:
        """The database of input partition ``partition``, or of a state named so (the learner's)."""
        path = self.root / str(partition)
        try:
            return StateDatabase(path)
        except Exception as error:
            if not _held(error):
                raise
            spare = self.root / f"{partition}{_SPARE}{uuid.uuid4().hex[:8]}"
            log.warning("state_dir_locked", partition=partition, path=str(path), using=str(spare))
            return StateDatabase(spare)

    @staticmethod
    def close(database: StateDatabase) -> None:
        """Close ``database``; a spare directory is deleted, as nothing will open it again."""
        database.close()
        if _SPARE in database.path.name:
            shutil.rmtree(database.path, ignore_errors=True)

    def _delete_abandoned_spares(self) -> None:
        """Delete the spare directories killed processes left; one that a live process holds stays."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob(f"*{_SPARE}*")):
            try:
                StateDatabase(path).close()
            except Exception as error:  # one that cannot be opened is as disposable, if not held
                if _held(error):
                    continue
            shutil.rmtree(path, ignore_errors=True)
            log.info("state_spare_deleted", path=str(path))


def _held(error: Exception) -> bool:
    """Whether opening a database failed for its lock, held by another process (or by this one):
    rocksdict raises a bare Exception."""
    return "lock" in str(error).lower()


def restored_with_state(
    checkpoint: Checkpoint,
    state: StateDatabase | None,
    reader: Consumer,
    *,
    topic: str,
    partition: int,
    restore: Callable[[StateStores], T],
    name: str | None = None,
) -> T:
    """``restore`` of ``checkpoint``'s snapshot, with its state on disk brought up to date in
    ``state``, or moved there from a checkpoint of the in-memory layout. ValueError from
    ``restore`` if the snapshot cannot serve (say it refers to state on disk and ``state`` is None)."""
    if state is not None and checkpoint.lineage is not None:
        bring_up_to_date(state, reader, topic, partition, checkpoint, name=name)
    engine = restore(state or IN_MEMORY)
    if state is not None and checkpoint.lineage is None:
        state.reset()
        log.info("state_moved_to_disk", partition=name or partition, entries=move_to_disk(engine, state))
    return engine


def fresh_stores(state: StateDatabase | None) -> StateStores:
    """Stores for a state that starts from nothing: the database emptied, or memory."""
    if state is None:
        return IN_MEMORY
    state.reset()
    return state


def bring_up_to_date(
    state: StateDatabase,
    reader: Consumer,
    topic: str,
    partition: int,
    checkpoint: Checkpoint,
    *,
    name: str | None = None,
) -> None:
    """Make the database hold the state of ``checkpoint``: as it is if it already does, else
    rebuilt from the changes the checkpoints wrote (the local copy is missing, behind, or ahead
    by a checkpoint whose transaction failed)."""
    assert checkpoint.lineage is not None
    if state.is_current(checkpoint.lineage, checkpoint.checkpoint_id):
        log.info("state_local", partition=name or partition, checkpoint_id=checkpoint.checkpoint_id)
        return
    began = time.monotonic()
    changes = read_state_changes(reader, topic, partition, checkpoint.lineage, name)
    applied = state.rebuild(changes, checkpoint.lineage, checkpoint.checkpoint_id)
    log.info(
        "state_rebuilt",
        partition=name or partition,
        checkpoint_id=checkpoint.checkpoint_id,
        changes=applied,
        seconds=round(time.monotonic() - began, 3),
    )


def state_files_for(settings: ServiceSettings) -> StateFiles | None:
    """The instance's state directory, or None to keep the state in memory (FRAUD_STATE_STORE)."""
    if settings.state_store == "memory":
        return None
    return StateFiles(Path(settings.state_dir) / settings.instance_id.replace("/", "_"))
