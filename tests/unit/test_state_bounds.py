"""Sliding windows agree with brute force, and per-entity stores stay bounded in time and size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine.expiring import ExpiringStore
from detector.engine.windows import SlidingWindow

LENGTH, RESOLUTION = 3600.0, 12
WIDTH = LENGTH / RESOLUTION

events = st.lists(
    st.tuples(st.floats(0, 50_000, allow_nan=False), st.floats(0, 1e4, allow_nan=False)), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(events=events, read_at=st.floats(0, 60_000, allow_nan=False))
def test_window_matches_brute_force_over_whole_buckets(
    events: list[tuple[float, float]], read_at: float
) -> None:
    """Inside the window means: in one of the last ``resolution`` buckets up to ``read_at``'s own."""
    events = sorted(events)
    window = SlidingWindow(LENGTH, RESOLUTION)
    for t, value in events:
        window.add(t, value)
    read_at = max([read_at] + [t for t, _ in events])
    oldest_bucket = int(read_at // WIDTH) - RESOLUTION + 1
    inside = [v for t, v in events if int(t // WIDTH) >= oldest_bucket]
    count, total, total_sq = window.read(read_at)
    assert count == len(inside)
    assert abs(total - sum(inside)) <= 1e-6 * max(1.0, sum(inside))
    assert abs(total_sq - sum(v * v for v in inside)) <= 1e-6 * max(1.0, sum(v * v for v in inside))


def test_late_event_lands_in_its_own_bucket_or_is_dropped_when_outside() -> None:
    window = SlidingWindow(LENGTH, RESOLUTION)
    window.add(10_000.0, 1.0)
    window.add(10_000.0 - 2 * WIDTH, 2.0)  # late but inside
    window.add(10_000.0 - 2 * LENGTH, 4.0)  # late and long gone
    assert window.read(10_000.0)[:2] == (2, 3.0)
    assert window.read(10_000.0 + LENGTH - WIDTH)[:2] == (1, 1.0)


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
