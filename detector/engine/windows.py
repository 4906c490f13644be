"""Sliding event-time windows over bucketed sums: constant memory per window, whatever the traffic.

A window of length ``L`` keeps ``resolution`` buckets of ``L / resolution`` seconds, so it covers the
last ``L`` to a precision of one bucket. Totals are maintained incrementally: adding and expiring
cost O(1) amortised, and a read never scans the buckets.

The windows of one entity (a card's hour, day, week and month) see the same values, so they are one
object, and there is one per active card: its memory is most of the engine's memory per card. Every
number of every window sits in one flat ``array('d')`` (8 bytes each, no boxed Python object, one
allocation), and the shape (bucket widths, resolution) is a tuple shared by all sets of that shape.

>>> windows = SlidingWindows(lengths=(3600.0, 86400.0), resolution=4)  # 15-minute and 6-hour buckets
>>> windows.add(0.0, 10.0); windows.add(600.0, 30.0)
>>> windows.read(600.0)
[(2, 40.0, 1000.0), (2, 40.0, 1000.0)]
>>> windows.read(3600.0 + 900.0)  # both buckets have left the hour, not the day
[(0, 0.0, 0.0), (2, 40.0, 1000.0)]
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from functools import cache

# The array holds a header per window, [count, sum, sum of squares, number of buckets], then each
# window's buckets in turn, oldest first: [bucket index, count, sum, sum of squares]. Counts and
# indices are whole numbers far below 2**53, so a double holds them exactly.
_FIELDS = 4
# ((header offset, bucket width) per window, resolution, offset of the first bucket)
_Shape = tuple[tuple[tuple[int, float], ...], int, int]


@cache
def _shape(lengths: tuple[float, ...], resolution: int) -> _Shape:
    """One tuple per shape, shared by every window set of that shape rather than held by each."""
    heads = tuple((_FIELDS * i, length / resolution) for i, length in enumerate(lengths))
    return heads, resolution, _FIELDS * len(lengths)


class SlidingWindows:
    """Per length: count, sum and sum of squares of the values added in the last ``length`` seconds."""

    __slots__ = ("_data", "_shape")

    def __init__(self, lengths: Sequence[float], resolution: int = 24) -> None:
        self._shape = _shape(tuple(lengths), resolution)
        self._data = array("d", bytes(8 * _FIELDS * len(lengths)))

    def to_bytes(self) -> bytes:
        """The numbers, for state on disk: :meth:`from_bytes` with the same shape reads them back."""
        return self._data.tobytes()

    @classmethod
    def from_bytes(cls, lengths: Sequence[float], resolution: int, data: bytes) -> SlidingWindows:
        windows = cls.__new__(cls)
        windows._shape = _shape(tuple(lengths), resolution)
        windows._data = array("d")
        windows._data.frombytes(data)
        return windows

    def add(self, event_time: float, value: float) -> None:
        """Add ``value`` to every window; a window that ``event_time`` has already left ignores it."""
        heads, resolution, start = self._shape
        data = self._data
        square = value * value
        for head, width in heads:
            index = event_time // width  # a whole float, stored as such
            end = start + _FIELDS * int(data[head + 3])
            last = end - _FIELDS
            newest = data[last] if last >= start else None
            if newest is None or newest < index:  # a new newest bucket, made with its first value
                data[end:end] = array("d", (index, 1.0, value, square))
                data[head + 3] += 1.0
                end += _FIELDS
            else:
                position = last
                if newest != index:
                    position = self._bucket_for_late_event(head, start, end, index, resolution)
                    if position < 0:
                        start = end
                        continue
                    end = start + _FIELDS * int(data[head + 3])
                data[position + 1] += 1.0
                data[position + 2] += value
                data[position + 3] += square
            data[head] += 1.0
            data[head + 1] += value
            data[head + 2] += square
            start = end

    def read(self, event_time: float) -> list[tuple[int, float, float]]:
        """Expire what left each window at ``event_time``; (count, sum, sum of squares) per window."""
        heads, resolution, start = self._shape
        data = self._data
        totals = []
        for head, width in heads:
            end = start + _FIELDS * int(data[head + 3])
            # A whole float, as exact as an int: the oldest bucket index still in the window.
            oldest_kept = event_time // width - (resolution - 1)
            if start < end and data[start] < oldest_kept:  # else nothing left the window: the usual case
                end = self._expire(head, start, end, oldest_kept)
            totals.append((int(data[head]), data[head + 1], data[head + 2]))
            start = end
        return totals

    def trim(self, event_time: float) -> None:
        """Expire what left each window at ``event_time``, as :meth:`read` does, reading nothing."""
        heads, resolution, start = self._shape
        data = self._data
        for head, width in heads:
            end = start + _FIELDS * int(data[head + 3])
            oldest_kept = event_time // width - (resolution - 1)
            if start < end and data[start] < oldest_kept:
                end = self._expire(head, start, end, oldest_kept)
            start = end

    def _expire(self, head: int, start: int, end: int, oldest_kept: float) -> int:
        """Drop the buckets older than ``oldest_kept`` from one window; where its buckets now end."""
        data = self._data
        kept = start
        while kept < end and data[kept] < oldest_kept:
            data[head] -= data[kept + 1]
            data[head + 1] -= data[kept + 2]
            data[head + 2] -= data[kept + 3]
            kept += _FIELDS
        del data[start:kept]
        if kept == end:  # reset exactly, so float rounding never accumulates across idle periods
            data[head] = data[head + 1] = data[head + 2] = data[head + 3] = 0.0
        else:
            data[head + 3] -= (kept - start) // _FIELDS
        return end - (kept - start)

    def peek(self, event_time: float) -> list[tuple[int, float, float]]:
        """What :meth:`read` returns, without expiring anything: for state that many readers share,
        which must read the same whatever order they come in."""
        heads, resolution, start = self._shape
        data = self._data
        totals = []
        for head, width in heads:
            oldest_kept = int(event_time // width) - resolution + 1
            end = start + _FIELDS * int(data[head + 3])
            count, total, total_sq = data[head], data[head + 1], data[head + 2]
            kept = start
            while kept < end and data[kept] < oldest_kept:
                count -= data[kept + 1]
                total -= data[kept + 2]
                total_sq -= data[kept + 3]
                kept += _FIELDS
            if kept == end:  # as read() resets an emptied window exactly
                count = total = total_sq = 0.0
            totals.append((int(count), total, total_sq))
            start = end
        return totals

    def _bucket_for_late_event(self, head: int, start: int, end: int, index: float, resolution: int) -> int:
        """Where the bucket of an event older than the window's newest one is, created in place if
        needed; -1 if the event is already outside the window."""
        data = self._data
        if index < data[end - _FIELDS] - resolution + 1:
            return -1
        position = end - _FIELDS
        while position >= start and data[position] > index:
            position -= _FIELDS
        if position >= start and data[position] == index:
            return position
        position += _FIELDS  # just after the newest bucket older than the event
        data[position:position] = array("d", (index, 0.0, 0.0, 0.0))
        data[head + 3] += 1.0
        return position
