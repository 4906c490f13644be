"""Sliding windows agree with brute force, and per-entity stores stay bounded in time and size."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine.expiring import ExpiringKeys, ExpiringStore
from detector.engine.windows import SlidingWindows

LENGTH, RESOLUTION = 3600.0, 12
WIDTH = LENGTH / RESOLUTION

events = st.lists(
    st.tuples(st.floats(0, 50_000, allow_nan=False), st.floats(0, 1e4, allow_nan=False)), max_size=60
)


class ReferenceWindow:
    """One window as buckets of Python lists: the plain form of the arithmetic SlidingWindows packs.

    Every add and expiry does the same float operations in the same order, so the results must be
    equal to the last bit, not just close.
    """

    def __init__(self, length: float, resolution: int) -> None:
        self.width, self.resolution = length / resolution, resolution
        self.buckets: list[list] = []  # [bucket index, count, sum, sum of squares], oldest first
        self.count, self.total, self.total_sq = 0, 0.0, 0.0

    def add(self, event_time: float, value: float) -> None:
        index = int(event_time // self.width)
        if self.buckets and index < self.buckets[-1][0] - self.resolution + 1:
            return
        position = len(self.buckets)
        while position and self.buckets[position - 1][0] > index:
            position -= 1
        if not position or self.buckets[position - 1][0] != index:
            self.buckets.insert(position, [index, 0, 0.0, 0.0])
            position += 1
        bucket = self.buckets[position - 1]
        bucket[1] += 1
        bucket[2] += value
        bucket[3] += value * value
        self.count += 1
        self.total += value
        self.total_sq += value * value

    def read(self, event_time: float) -> tuple[int, float, float]:
        oldest_kept = int(event_time // self.width) - self.resolution + 1
        while self.buckets and self.buckets[0][0] < oldest_kept:
            _, count, total, total_sq = self.buckets.pop(0)
            self.count -= count
            self.total -= total
            self.total_sq -= total_sq
        if not self.buckets:
            self.count, self.total, self.total_sq = 0, 0.0, 0.0
        return self.count, self.total, self.total_sq


@settings(max_examples=200, deadline=None)
@given(events=events, read_at=st.floats(0, 60_000, allow_nan=False))
def test_window_matches_brute_force_over_whole_buckets(
    events: list[tuple[float, float]], read_at: float
) -> None:
    """Inside the window means: in one of the last ``resolution`` buckets up to ``read_at``'s own."""
    events = sorted(events)
    windows = SlidingWindows((LENGTH,), RESOLUTION)
    for t, value in events:
        windows.add(t, value)
    read_at = max([read_at] + [t for t, _ in events])
    oldest_bucket = int(read_at // WIDTH) - RESOLUTION + 1
    inside = [v for t, v in events if int(t // WIDTH) >= oldest_bucket]
    [(count, total, total_sq)] = windows.read(read_at)
    assert count == len(inside)
    assert abs(total - sum(inside)) <= 1e-6 * max(1.0, sum(inside))
    assert abs(total_sq - sum(v * v for v in inside)) <= 1e-6 * max(1.0, sum(v * v for v in inside))


steps = st.lists(
    st.tuples(
        st.booleans(),  # read, else add
        st.floats(0, 8 * LENGTH, allow_nan=False),
        st.floats(0, 1e4, allow_nan=False),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_each_window_of_a_set_is_bit_for_bit_a_window_alone(steps: list[tuple[bool, float, float]]) -> None:
    """Out of order, late, expired and idle: the packed windows give exactly the reference floats."""
    lengths = (LENGTH, 4 * LENGTH, 24 * LENGTH)
    windows = SlidingWindows(lengths, RESOLUTION)
    references = [ReferenceWindow(length, RESOLUTION) for length in lengths]
    for is_read, t, value in steps:
        if is_read:
            assert windows.read(t) == [reference.read(t) for reference in references]
        else:
            windows.add(t, value)
            for reference in references:
                reference.add(t, value)
    end = max([t for _, t, _ in steps], default=0.0)
    restored = pickle.loads(pickle.dumps(windows))
    assert restored.read(end) == windows.read(end) == [reference.read(end) for reference in references]


def test_late_event_lands_in_its_own_bucket_or_is_dropped_when_outside() -> None:
    windows = SlidingWindows((LENGTH,), RESOLUTION)
    windows.add(10_000.0, 1.0)
    windows.add(10_000.0 - 2 * WIDTH, 2.0)  # late but inside
    windows.add(10_000.0 - 2 * LENGTH, 4.0)  # late and long gone
    assert windows.read(10_000.0)[0][:2] == (2, 3.0)
    assert windows.read(10_000.0 + LENGTH - WIDTH)[0][:2] == (1, 1.0)


def test_an_event_too_late_for_the_short_window_still_counts_in_the_long_one() -> None:
    windows = SlidingWindows((LENGTH, 10 * LENGTH), RESOLUTION)
    windows.add(10 * LENGTH, 1.0)
    windows.add(10 * LENGTH - 2 * LENGTH, 2.0)
    assert windows.read(10 * LENGTH) == [(1, 1.0, 1.0), (2, 3.0, 5.0)]


def test_window_state_is_bounded_by_its_resolution() -> None:
    windows = SlidingWindows((LENGTH, 2 * LENGTH), RESOLUTION)
    for i in range(10_000):
        windows.add(i * 7.0, 1.0)
        windows.read(i * 7.0)
    assert len(windows._data) <= 4 * 2 + 4 * 2 * (RESOLUTION + 1)


def test_store_evicts_idle_entries_and_caps_its_size() -> None:
    store = ExpiringStore[int](ttl=100.0, max_entries=1000)
    for i in range(5000):
        store.put(f"k{i}", i, now=float(i))
        store.evict(float(i))
    # Only what was touched within ttl (plus one sweep interval) survives.
    assert 100 <= len(store) <= 100 + 100 / 64 + 1
    assert store.evicted_for_age >= 4898
    capped = ExpiringStore[int](ttl=1e9, max_entries=10)
    for i in range(25):
        capped.put(f"k{i}", i, now=0.0)
    assert len(capped) == 10 and capped.evicted_for_size == 15
    assert next(iter(capped.keys())) == "k15"


def test_touching_an_entry_keeps_it_alive_and_out_of_order_touches_do_not_age_it() -> None:
    store = ExpiringStore[int](ttl=100.0, max_entries=10)
    store.put("kept", 1, now=0.0)
    store.put("gone", 2, now=0.0)
    store.put("kept", 3, now=90.0)
    store.put("kept", 4, now=10.0)  # an older event must not move the last touch back
    store.evict(150.0)
    assert list(store.keys()) == ["kept"]
    assert store.get("kept") == 4


touches = st.lists(
    st.tuples(st.integers(0, 12), st.floats(0, 2_000, allow_nan=False), st.booleans()), max_size=200
)


@settings(max_examples=300, deadline=None)
@given(touches=touches)
def test_expiring_keys_keep_exactly_the_keys_an_expiring_store_keeps(
    touches: list[tuple[int, float, bool]],
) -> None:
    """Same touches, same sweeps: the same keys in the same order, evicted at the same moments."""
    keys, store = ExpiringKeys(ttl=100.0, max_entries=5), ExpiringStore[None](ttl=100.0, max_entries=5)
    for key, now, sweep in touches:
        keys.add(f"k{key}", now)
        store.put(f"k{key}", None, now)
        if sweep:
            assert keys.evict(now) == store.evict(now)
        assert list(keys.keys()) == list(store.keys()) and len(keys) == len(store)
    assert list(pickle.loads(pickle.dumps(keys)).keys()) == list(keys.keys())
