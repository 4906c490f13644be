"""One partition's large state on local disk: RocksDB (through rocksdict), and the stores in it.

The engine asks it for its stores (:meth:`StateDatabase.expiring`) as it would ask the in-memory
:data:`~detector.engine.expiring.IN_MEMORY`. A checkpoint drains what changed in every store
(:meth:`StateDatabase.drain`), writes it to the database with the checkpoint's id, and the service
writes the same changes to the partition's changelog topic. The database is *current* for a
checkpoint when it holds that checkpoint's id; otherwise it is rebuilt from the changelog
(:meth:`StateDatabase.rebuild`). Why this layout: docs/state.md.

Every state has a *lineage*, an id given when a partition starts from nothing: its changelog
records carry it, so a rebuild ignores what an earlier, abandoned state of the partition left in
the changelog.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rocksdict import Options, Rdict, WriteBatch

from detector.engine.expiring import Codec, KeyedState, StateStores
from detector.state.stored import Change, StoredExpiringStore

V = TypeVar("V")

_META = b"\x01meta\x00"  # below every store's keys, which start with a printable name
_FIRST_KEY, _PAST_LAST_KEY = b"\x00", b"\xff"  # around every key: metadata and store names
_LINEAGE, _CHECKPOINT = _META + b"lineage", _META + b"checkpoint"
_loading = threading.local()  # the database a snapshot is being restored into, per thread
_BATCH = 50_000  # changes per write batch while rebuilding
_MEMTABLE_BYTES = 8 * 1024 * 1024


class StateDatabase(StateStores):
    """The stores of one partition on disk, written at checkpoints, rebuilt from the changelog."""

    def __init__(self, path: Path, cache_entries: int = 10_000) -> None:
        self.path = path
        self.cache_entries = cache_entries
        self._stores: dict[str, StoredExpiringStore[Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), _options())

    @property
    def lineage(self) -> str | None:
        return _text(self._db.get(_LINEAGE))

    @property
    def checkpoint_id(self) -> str | None:
        """The checkpoint whose state the database holds (None: none written yet)."""
        return _text(self._db.get(_CHECKPOINT))

    def is_current(self, lineage: str, checkpoint_id: str) -> bool:
        return self.lineage == lineage and self.checkpoint_id == checkpoint_id

    # -- the engine's side ------------------------------------------------------------------------

    def expiring(self, name: str, ttl: float, max_entries: int, codec: Codec[V]) -> KeyedState[V]:
        return self._store(name, ttl, max_entries, codec, None)

    def reducers(self) -> dict[type, Callable[[Any], Any]]:
        return {StoredExpiringStore: _reference}

    @contextmanager
    def loading(self) -> Iterator[object]:
        _loading.database = self
        try:
            yield self
        finally:
            _loading.database = None

    # -- the checkpoint's side --------------------------------------------------------------------

    @property
    def changed(self) -> int:
        """Entries changed since the last drain, in every store."""
        return sum(store.changed for store in self._stores.values())

    def drain(self) -> list[Change]:
        """Every store's changes since the last drain; write them with :meth:`write`."""
        return [change for store in self._stores.values() for change in store.drain()]

    def write(self, changes: Iterable[Change], lineage: str, checkpoint_id: str) -> None:
        """Apply ``changes`` and mark the database as holding ``checkpoint_id``, atomically."""
        batch = _batch(changes)
        batch.put(_LINEAGE, lineage.encode())
        batch.put(_CHECKPOINT, checkpoint_id.encode())
        self._db.write(batch)

    def reset(self) -> str:
        """Empty the database for a state that starts from nothing; returns its new lineage."""
        self._empty()
        lineage = uuid.uuid4().hex
        self._db.put(_LINEAGE, lineage.encode())
        return lineage

    def rebuild(self, changes: Iterable[Change], lineage: str, checkpoint_id: str) -> int:
        """Empty the database and apply ``changes`` (the changelog of ``lineage``, in order), as
        the state of ``checkpoint_id``; returns how many changes were applied."""
        self._empty()
        applied = 0
        batch: list[Change] = []
        for change in changes:
            batch.append(change)
            if len(batch) >= _BATCH:
                self._db.write(_batch(batch))
                applied += len(batch)
                batch = []
        self.write(batch, lineage, checkpoint_id)
        return applied + len(batch)

    def close(self) -> None:
        self._stores.clear()
        self._db.close()

    # -- the stores' side -------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) from ``start`` on, in key order, while keys begin with ``prefix``."""
        cursor = self._db.iter()
        cursor.seek(start)
        while cursor.valid():
            key = cursor.key()
            if not key.startswith(prefix):
                return
            yield key, cursor.value()
            cursor.next()

    # -- internals ----------------------------------------------------------------------------

    def _store(
        self, name: str, ttl: float, max_entries: int, codec: Codec[V], state: dict[str, Any] | None
    ) -> StoredExpiringStore[V]:
        if name in self._stores:
            raise ValueError(f"store {name!r} is opened twice in one database")
        store = StoredExpiringStore[V](
            self, name, ttl, max_entries, codec=codec, cache_entries=self.cache_entries, state=state
        )
        self._stores[name] = store
        return store

    def _empty(self) -> None:
        """Delete every entry, keeping the database open; every store of the old state is forgotten.

        Not by deleting the directory: closing it to do so would let another process of the
        instance (one taking over) open it in between, and one of the two then failed."""
        self._stores.clear()
        self._db.delete_range(_FIRST_KEY, _PAST_LAST_KEY)


def _reference(store: StoredExpiringStore[Any]) -> tuple[Callable[..., object], tuple[object, ...]]:
    """How a snapshot pickles a store on disk: its name, limits, codec and figures, not its entries."""
    if store.changed:  # its figures would count entries the database does not hold
        raise ValueError(f"store {store.name!r} has changes not drained into the database")
    return _stored, (store.name, store.ttl, store.max_entries, store.codec, store.state())


def _stored(name: str, ttl: float, max_entries: int, codec: Codec[Any], state: dict[str, Any]) -> object:
    """A store of a snapshot being restored, opened in the database it is restored into."""
    database: StateDatabase | None = getattr(_loading, "database", None)
    if database is None:
        raise pickle.UnpicklingError("the snapshot refers to state on disk, and no state database was given")
    return database._store(name, ttl, max_entries, codec, state)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    # Memtables of 8 MB, two at most, not RocksDB's 64 MB: a partition's database is written in
    # bursts at checkpoints, and a 64 MB memtable filling up over minutes read as memory growth.
    options.set_write_buffer_size(_MEMTABLE_BYTES)
    options.set_max_write_buffer_number(2)
    return options


def _batch(changes: Iterable[Change]) -> WriteBatch:
    batch = WriteBatch(raw_mode=True)
    for key, value in changes:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    return batch


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()
