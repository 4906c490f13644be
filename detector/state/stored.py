"""An expiring store on disk: :class:`~detector.engine.expiring.ExpiringStore`'s rules, RocksDB's memory.

The same entries expire and are evicted for size as in the store in memory, in the same order, so
an engine on disk decides exactly as one in memory (tests/unit/test_state_store.py checks it).
Entries touched since the last checkpoint are kept as objects (``_dirty``), a bounded cache holds
recently read ones (not those just written: most are written once, as pending scores are, and
caching them made memory grow up to the cache's bound), and everything else is on disk.
:meth:`StoredExpiringStore.drain` turns what changed into key/value changes, which the checkpoint
writes to the changelog topic and the local database (docs/state.md).

On disk, under the store's name:

* ``d`` + key -> touch sequence number, last touch and the encoded value;
* ``i`` + sequence number (big-endian) -> last touch and key: the order of last touch, which
  :class:`ExpiringStore` keeps in its ordered dict. Eviction walks it from the oldest end.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from detector.engine.expiring import Codec, ExpiringStore

V = TypeVar("V")

_NEVER = float("-inf")
_SWEEPS_PER_TTL = 64  # as ExpiringStore
_HEAD = struct.Struct(">Qd")  # sequence number, last touch
_SEQ = struct.Struct(">Q")
_TOUCH = struct.Struct(">d")
_MISSING = object()

Entry = tuple[int, float, V]  # (touch sequence number, last touch, value)
Change = tuple[bytes, bytes | None]  # a key and its new value, None for a deletion


class Backend(Protocol):
    """The committed state a store reads: the partition's database."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class StoredExpiringStore(Generic[V]):
    """Entries untouched for ``ttl`` seconds of event time are evicted; at most ``max_entries`` are kept."""

    def __init__(
        self,
        backend: Backend,
        name: str,
        ttl: float,
        max_entries: int,
        *,
        codec: Codec[V],
        cache_entries: int,
        state: dict[str, float | int] | None = None,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self.name, self.ttl, self.max_entries = name, ttl, max_entries
        # At least one entry: the engine changes a value it has just read in place before putting
        # it back (reading a card's windows expires their old buckets), so the next read must return
        # that same object, as the store in memory does, not the older copy on disk.
        self._backend, self.codec, self._cache_entries = backend, codec, max(cache_entries, 1)
        self._data_prefix = name.encode() + b"\x00d"
        self._index_prefix = name.encode() + b"\x00i"
        state = state or {}
        self.evicted_for_age = int(state.get("evicted_for_age", 0))
        self.evicted_for_size = int(state.get("evicted_for_size", 0))
        self._count = int(state.get("count", 0))
        self._seq = int(state.get("seq", 0))  # the latest touch sequence number given
        self._next_sweep = float(state.get("next_sweep", _NEVER))
        self._floor = int(state.get("floor", 1))  # no live entry on disk has a lower sequence number
        self._sweep_every = ttl / _SWEEPS_PER_TTL
        self._on_disk = self._seq  # every sequence number on disk is at most this
        self._dirty: dict[str, Entry[V] | None] = {}  # since the last drain, in order of last touch
        self._superseded: set[int] = set()  # sequence numbers on disk touched again or deleted since
        self._cache: OrderedDict[str, Entry[V]] = OrderedDict()  # recently read, unchanged entries

    def state(self) -> dict[str, float | int]:
        """The figures a snapshot keeps, beside the entries on disk (taken right after :meth:`drain`)."""
        return {
            "evicted_for_age": self.evicted_for_age,
            "evicted_for_size": self.evicted_for_size,
            "count": self._count,
            "seq": self._seq,
            "next_sweep": self._next_sweep,
            "floor": self._floor,
        }

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: str) -> bool:
        return self._entry(key) is not None

    def get(self, key: str) -> V | None:
        entry = self._entry(key)
        return None if entry is None else entry[2]

    def put(self, key: str, value: V, now: float) -> None:
        """Insert or replace, marking the entry as touched at ``now`` (never moved backwards)."""
        previous = self._entry(key)
        if previous is None:
            self._count += 1
            touched = now
        else:
            self._supersede(previous[0])
            touched = now if now > previous[1] else previous[1]
        self._seq += 1
        self._dirty.pop(key, None)  # re-inserted last: the dict's order is the order of last touch
        self._dirty[key] = (self._seq, touched, value)
        self._cache.pop(key, None)
        if self._count > self.max_entries:
            seq, _, oldest = self._oldest()
            self._remove(seq, oldest)
            self.evicted_for_size += 1

    def update(self, key: str, value: V) -> None:
        """``value``, read from ``key``, was changed in place: write it at the next drain, in the
        same place in the order of last touch."""
        entry = self._entry(key)
        if entry is not None:
            self._dirty[key] = (entry[0], entry[1], value)
            self._cache.pop(key, None)

    def pop(self, key: str) -> V | None:
        entry = self._entry(key)
        if entry is None:
            return None
        self._remove(entry[0], key)
        return entry[2]

    def evict(self, now: float) -> int:
        """Drop the entries last touched before ``now - ttl``; returns how many went."""
        if now < self._next_sweep:
            return 0
        self._next_sweep = now + self._sweep_every
        horizon = now - self.ttl
        expired = 0
        while self._count:
            seq, touched, key = self._oldest()
            if touched >= horizon:
                break
            self._remove(seq, key)
            expired += 1
        self.evicted_for_age += expired
        return expired

    def drain(self) -> list[Change]:
        """The changes since the last drain, as database keys and values; they count as written."""
        changes: list[Change] = []
        encode = self.codec.encode
        for key, entry in self._dirty.items():
            data_key = self._data_prefix + key.encode()
            if entry is None:
                changes.append((data_key, None))
                continue
            seq, touched, value = entry
            changes.append((data_key, _HEAD.pack(seq, touched) + encode(value)))
            changes.append((self._index_prefix + _SEQ.pack(seq), _TOUCH.pack(touched) + key.encode()))
        changes.extend((self._index_prefix + _SEQ.pack(seq), None) for seq in self._superseded)
        self._dirty.clear()
        self._superseded.clear()
        self._on_disk = self._seq
        return changes

    def fill_from(self, store: ExpiringStore[V]) -> None:
        """Take the entries, order and counters of ``store`` (state from an in-memory snapshot)."""
        next_sweep, entries = store.export()
        for key, (touched, value) in entries.items():
            self.put(key, value, touched)
        self.evicted_for_age, self.evicted_for_size = store.evicted_for_age, store.evicted_for_size
        self._next_sweep = next_sweep

    @property
    def changed(self) -> int:
        """Entries changed since the last drain."""
        return len(self._dirty) + len(self._superseded)

    # -- internals ----------------------------------------------------------------------------

    def _entry(self, key: str) -> Entry[V] | None:
        entry = self._dirty.get(key, _MISSING)
        if entry is not _MISSING:
            return entry  # type: ignore[return-value]
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        data = self._backend.get(self._data_prefix + key.encode())
        if data is None:
            return None
        seq, touched = _HEAD.unpack_from(data)
        loaded = (seq, touched, self.codec.decode(data[_HEAD.size :]))
        self._remember(key, loaded)
        return loaded

    def _remember(self, key: str, entry: Entry[V]) -> None:
        cache = self._cache
        cache[key] = entry
        cache.move_to_end(key)
        if len(cache) > self._cache_entries:
            cache.popitem(last=False)

    def _supersede(self, seq: int) -> None:
        """The entry of ``seq`` is touched again or deleted: its place in the order goes."""
        if seq <= self._on_disk:
            self._superseded.add(seq)

    def _remove(self, seq: int, key: str) -> None:
        self._supersede(seq)
        self._dirty.pop(key, None)
        self._dirty[key] = None
        self._cache.pop(key, None)
        self._count -= 1

    def _oldest(self) -> tuple[int, float, str]:
        """(sequence number, last touch, key) of the entry touched longest ago (there is one)."""
        for seq, touched, key in self._disk_order():
            return seq, touched, key
        for key, entry in self._dirty.items():
            if entry is not None:
                return entry[0], entry[1], key
        raise RuntimeError(f"store {self.name} counts {self._count} entries but holds none")

    def _disk_order(self) -> Iterator[tuple[int, float, str]]:
        """The live entries on disk, oldest touch first; moves the floor past superseded ones."""
        prefix = self._index_prefix
        start = prefix + _SEQ.pack(self._floor)
        for index_key, value in self._backend.scan(start, prefix):
            (seq,) = _SEQ.unpack_from(index_key, len(prefix))
            if seq in self._superseded:
                continue
            self._floor = seq
            (touched,) = _TOUCH.unpack_from(value)
            yield seq, touched, value[_TOUCH.size :].decode()
        self._floor = self._on_disk + 1
