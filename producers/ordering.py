"""Event-time order between transactions and labels.

The rule both producers follow: a label stamped T goes out after every transaction stamped at or
before T, so a consumer that reads in order never sees a label before its transaction, and never
sees a label earlier than a replay at real speed would deliver it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from detector.engine.records import Label


class LabelQueue:
    """Labels waiting for the transactions stamped up to their own time to go out first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Label]] = []
        self._pushed = 0

    @property
    def next_time(self) -> float:
        """The time of the earliest waiting label (infinity if none): cheaper to test than to pop."""
        return self._heap[0][0] if self._heap else float("inf")

    def push(self, label: Label) -> None:
        self._pushed += 1
        heapq.heappush(self._heap, (label.event_time, self._pushed, label))

    def before(self, event_time: float) -> Iterator[Label]:
        """Pop, in order, the labels stamped strictly before ``event_time``: those are due before a
        transaction stamped ``event_time``."""
        heap = self._heap
        while heap and heap[0][0] < event_time:
            yield heapq.heappop(heap)[2]

    def drain(self) -> Iterator[Label]:
        """Pop every remaining label, in order."""
        return self.before(float("inf"))
