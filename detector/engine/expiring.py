"""A keyed store whose entries expire in event time, so memory follows active entities, not history.

Every per-entity structure of the engine (card and terminal state, pending labels, seen ids) is one of
these. Entries are kept in order of last touch; eviction pops from the old end, so a sweep costs
only what it removes. Sweeps run at most once per ``ttl / 64`` of event time, so an entry lives at
most ``ttl * (1 + 1/64)`` after its last touch.

>>> store = ExpiringStore(ttl=10.0, max_entries=2)
>>> store.put("a", 1, now=0.0); store.put("b", 2, now=5.0)
>>> store.evict(now=12.0)  # "a" was last touched more than 10 s before
1
>>> list(store.keys())
['b']
>>> store.put("c", 3, now=13.0); store.put("d", 4, now=14.0)  # over max_entries: the oldest goes
>>> list(store.keys()), store.evicted_for_size
(['c', 'd'], 1)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringStore(Generic[V]):
    """Entries untouched for ``ttl`` seconds of event time are evicted; at most ``max_entries`` are kept."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self.ttl = ttl
        self.max_entries = max_entries
        self.evicted_for_age = 0
        self.evicted_for_size = 0
        self._sweep_every = ttl / 64
        self._next_sweep = float("-inf")
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> Iterator[str]:
        return iter(self._entries)

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

    def pop(self, key: str) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def evict(self, now: float) -> int:
        """Drop the entries last touched before ``now - ttl``; returns how many went."""
        if now < self._next_sweep:  # checked here too: this runs several times per transaction
            return 0
        return sum(1 for _ in self.pop_expired(now))

    def pop_expired(self, now: float) -> Iterator[tuple[str, V]]:
        """Like :meth:`evict`, but hands each expired entry to the caller (e.g. to count it)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        entries = self._entries
        horizon = now - self.ttl
        while entries:
            key, (touched, value) = next(iter(entries.items()))
            if touched >= horizon:
                return
            del entries[key]
            self.evicted_for_age += 1
            yield key, value
