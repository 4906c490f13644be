"""Sliding event-time windows over bucketed sums: constant memory per window, whatever the traffic.

A window of length ``L`` keeps ``resolution`` buckets of ``L / resolution`` seconds, so it covers the
last ``L`` to a precision of one bucket. Totals are maintained incrementally: adding and expiring
cost O(1) amortised, and a read never scans the buckets.

>>> window = SlidingWindow(length=3600.0, resolution=4)  # one hour in 15-minute buckets
>>> window.add(0.0, 10.0); window.add(600.0, 30.0)
>>> window.read(600.0)
(2, 40.0, 1000.0)
>>> window.read(3600.0 + 900.0)  # both buckets have left the hour
(0, 0.0, 0.0)
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Count, sum and sum of squares of the values added in the last ``length`` seconds."""

    __slots__ = ("_buckets", "_resolution", "_width", "count", "total", "total_sq")

    def __init__(self, length: float, resolution: int = 24) -> None:
        self._width = length / resolution
        self._resolution = resolution
        # Each bucket is [bucket index, count, sum, sum of squares], oldest first.
        self._buckets: deque[list] = deque()
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, event_time: float, value: float) -> None:
        index = int(event_time // self._width)
        buckets = self._buckets
        if buckets and buckets[-1][0] == index:
            bucket = buckets[-1]
        elif not buckets or buckets[-1][0] < index:
            bucket = [index, 0, 0.0, 0.0]
            buckets.append(bucket)
        else:
            bucket = self._bucket_for_late_event(index)
            if bucket is None:
                return
        bucket[1] += 1
        bucket[2] += value
        bucket[3] += value * value
        self.count += 1
        self.total += value
        self.total_sq += value * value

    def read(self, event_time: float) -> tuple[int, float, float]:
        """Expire what left the window at ``event_time``; return (count, sum, sum of squares)."""
        oldest_kept = int(event_time // self._width) - self._resolution + 1
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest_kept:
            _, count, total, total_sq = buckets.popleft()
            self.count -= count
            self.total -= total
            self.total_sq -= total_sq
        if not buckets:  # reset exactly, so float rounding never accumulates across idle periods
            self.count, self.total, self.total_sq = 0, 0.0, 0.0
        return self.count, self.total, self.total_sq

    def _bucket_for_late_event(self, index: int) -> list | None:
        """The bucket for an event older than the newest one, created in place if needed."""
        buckets = self._buckets
        if index < buckets[-1][0] - self._resolution + 1:
            return None  # already outside the window
        for position in range(len(buckets) - 1, -1, -1):
            if buckets[position][0] == index:
                return buckets[position]
            if buckets[position][0] < index:
                bucket = [index, 0, 0.0, 0.0]
                buckets.insert(position + 1, bucket)
                return bucket
        bucket = [index, 0, 0.0, 0.0]
        buckets.appendleft(bucket)
        return bucket
