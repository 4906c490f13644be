"""Keyed state whose entries expire in event time, so memory follows active entities, not history.

Every per-entity structure of the engine (card and terminal state, pending labels, seen ids) is an
``ExpiringStore``; the small per-card sets of terminals are ``ExpiringKeys``, which follow the same
rules at a third of the memory. Entries are kept in order of last touch; eviction pops from the old
end, so a sweep costs only what it removes. Sweeps run at most once per ``ttl / 64`` of event time,
so an entry lives at most ``ttl * (1 + 1/64)`` after its last touch.

>>> store = ExpiringStore(ttl=10.0, max_entries=2)
>>> store.put("a", 1, now=0.0); store.put("b", 2, now=5.0)
>>> store.evict(now=12.0)  # "a" was last touched more than 10 s before
1
>>> list(store.keys())
['b']
>>> store.put("c", 3, now=13.0); store.put("d", 4, now=14.0)  # over max_entries: the oldest goes
>>> list(store.keys()), store.evicted_for_size
(['c', 'd'], 1)
>>> seen = ExpiringKeys(ttl=10.0, max_entries=2)
>>> seen.add("a", now=0.0); seen.add("b", now=5.0); seen.evict(now=12.0)
1
>>> "a" in seen, "b" in seen
(False, True)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

V = TypeVar("V")

_SWEEPS_PER_TTL = 64
_NEVER = float("-inf")  # one shared object: a new set costs no float of its own until its first sweep


def _check_limits(ttl: float, max_entries: int) -> None:
    if ttl <= 0 or max_entries <= 0:
        raise ValueError("ttl and max_entries must be positive")


class _Keyed:
    """What both kinds of expiring state answer about their keys, held in ``_entries`` by touch order."""

    __slots__ = ("_entries",)
    _entries: Mapping[str, object]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> Iterator[str]:
        return iter(self._entries)


class ExpiringStore(_Keyed, Generic[V]):
    """Entries untouched for ``ttl`` seconds of event time are evicted; at most ``max_entries`` are kept."""

    __slots__ = (
        "_next_sweep",
        "_sweep_every",
        "evicted_for_age",
        "evicted_for_size",
        "max_entries",
        "ttl",
    )

    def __init__(self, ttl: float, max_entries: int) -> None:
        _check_limits(ttl, max_entries)
        self.ttl = ttl
        self.max_entries = max_entries
        self.evicted_for_age = 0
        self.evicted_for_size = 0
        self._sweep_every = ttl / _SWEEPS_PER_TTL
        self._next_sweep = _NEVER
        # An OrderedDict, not a dict: it pops its oldest entry in O(1) however many were deleted before.
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: str, value: V, now: float) -> None:
        """Insert or replace, marking the entry as touched at ``now``."""
        entries = self._entries
        previous = entries.get(key)
        # Out-of-order events never move an entry's last touch backwards.
        entries[key] = (now if previous is None or now > previous[0] else previous[0], value)
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evicted_for_size += 1

    @classmethod
    def restored(
        cls, ttl: float, max_entries: int, next_sweep: float, entries: Iterable[tuple[str, float, V]]
    ) -> ExpiringStore[V]:
        """The store :meth:`export` described: (key, last touch, value) in order of last touch."""
        store = cls(ttl, max_entries)
        store._next_sweep = next_sweep
        store._entries = OrderedDict((key, (touched, value)) for key, touched, value in entries)
        return store

    def export(self) -> tuple[float, OrderedDict[str, tuple[float, V]]]:
        """(next sweep, key -> (last touch, value) in order of last touch), to move it to disk."""
        return self._next_sweep, self._entries

    def update(self, key: str, value: V) -> None:
        """``value``, read from ``key``, was changed in place; its touch is not. Nothing to do in
        memory, where it is the stored object: a store on disk writes it at the next checkpoint."""

    def pop(self, key: str) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def evict(self, now: float) -> int:
        """Drop the entries last touched before ``now - ttl``; returns how many went."""
        if now < self._next_sweep:  # the usual case: this runs several times per transaction
            return 0
        self._next_sweep = now + self._sweep_every
        entries = self._entries
        horizon = now - self.ttl
        expired = 0
        while entries:
            key, (touched, _) = next(iter(entries.items()))
            if touched >= horizon:
                break
            del entries[key]
            expired += 1
        self.evicted_for_age += expired
        return expired


@cache
def _limits(ttl: float, max_entries: int) -> tuple[float, int, float]:
    """(ttl, max_entries, sweep interval), one tuple per configuration, shared by all the sets using it."""
    return ttl, max_entries, ttl / _SWEEPS_PER_TTL


class ExpiringKeys(_Keyed):
    """A set of keys under the rules of :class:`ExpiringStore`, for the many small sets of the engine.

    There is one per card, so it is lean: a plain dict of last-touch times (no tuple per entry, no
    OrderedDict links) and limits shared by every set of the same configuration. A dict deletes its
    oldest key by scanning past the holes earlier deletions left, which stays cheap only while the
    set is small (tens of keys): large sets belong in an ExpiringStore. No eviction counters are kept.
    """

    __slots__ = ("_limits", "_next_sweep")

    def __init__(self, ttl: float, max_entries: int) -> None:
        _check_limits(ttl, max_entries)
        self._limits = _limits(ttl, max_entries)
        self._next_sweep = _NEVER
        self._entries: dict[str, float] = {}  # key -> last touch

    def add(self, key: str, now: float) -> None:
        """Insert or touch ``key`` at ``now``, as :meth:`ExpiringStore.put` does."""
        touched = self._entries
        previous = touched.pop(key, None)  # and reinserted: the dict's order is the order of last touch
        touched[key] = now if previous is None or now > previous else previous
        if len(touched) > self._limits[1]:
            del touched[next(iter(touched))]

    def export(self) -> tuple[float, dict[str, float]]:
        """(next sweep, key -> last touch in order of last touch), for state on disk."""
        return self._next_sweep, self._entries

    @classmethod
    def restored(
        cls, ttl: float, max_entries: int, next_sweep: float, entries: dict[str, float]
    ) -> ExpiringKeys:
        """The set :meth:`export` described."""
        keys = cls(ttl, max_entries)
        keys._next_sweep, keys._entries = next_sweep, entries
        return keys

    def last_touch(self, key: str) -> float | None:
        """When ``key`` was last added (None if absent or evicted)."""
        return self._entries.get(key)

    def evict(self, now: float) -> int:
        """Drop the keys last touched before ``now - ttl``; returns how many went."""
        if now < self._next_sweep:
            return 0
        ttl, _, sweep_every = self._limits
        self._next_sweep = now + sweep_every
        horizon = now - ttl
        touched = self._entries
        expired = []
        for key, last in touched.items():
            if last >= horizon:
                break
            expired.append(key)
        for key in expired:
            del touched[key]
        return len(expired)


class Codec(Protocol[V]):
    """How a store on disk writes an entry's value as bytes and reads it back."""

    def encode(self, value: V) -> bytes: ...

    def decode(self, data: bytes) -> V: ...


class KeyedState(Protocol[V]):
    """What the engine asks of its large per-entity state: an :class:`ExpiringStore`, or a store of
    the same rules on disk (:mod:`detector.state`)."""

    evicted_for_age: int
    evicted_for_size: int

    def __len__(self) -> int: ...

    def __contains__(self, key: str) -> bool: ...

    def get(self, key: str) -> V | None: ...

    def put(self, key: str, value: V, now: float) -> None: ...

    def update(self, key: str, value: V) -> None: ...

    def pop(self, key: str) -> V | None: ...

    def evict(self, now: float) -> int: ...


class StateStores:
    """Where the engine keeps its large per-entity state (cards, scored ids, pending scores).

    This one keeps it in memory, as backtests and benchmarks do; the service's is on disk, one
    database per partition (:class:`detector.state.database.StateDatabase`). A snapshot pickles a
    store on disk as a reference (:meth:`reducers`), resolved when it is restored (:meth:`loading`).
    """

    def expiring(self, name: str, ttl: float, max_entries: int, codec: Codec[V]) -> KeyedState[V]:
        """The store called ``name``, under :class:`ExpiringStore`'s rules."""
        return ExpiringStore[V](ttl=ttl, max_entries=max_entries)

    def reducers(self) -> dict[type, Callable[[Any], Any]]:
        """How to pickle the stores kept elsewhere (a pickler's dispatch table): by reference."""
        return {}

    def loading(self) -> AbstractContextManager[object]:
        """Where pickled references to stores are resolved while a snapshot is restored."""
        return nullcontext()


IN_MEMORY = StateStores()
