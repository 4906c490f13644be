"""Delayed labels: what was scored, kept until its label comes, and labels held until their time.

``PendingScores`` remembers, per transaction id, the exact feature vector and score the engine used,
so the model later learns from what it saw then, not from today's state. The vectors are stored as
``array('d')`` in the extractor's fixed feature order (about 300 bytes for 28 features, against
about 2 KB for a dict), bounded by a horizon in event time and by a maximum count.

``LabelQueue`` holds labels until event time has passed their timestamp, so a label is never learned
before the transactions that preceded it were scored, however fast the inputs are replayed.

>>> queue = LabelQueue()
>>> from detector.engine.records import Label
>>> queue.push(Label("t2", "c", False, 20.0)); queue.push(Label("t1", "c", True, 10.0))
>>> [label.transaction_id for label in queue.pop_before(15.0)]
['t1']
>>> [label.transaction_id for label in queue.pop_before(float("inf"))]
['t2']
"""

from __future__ import annotations

import heapq
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from detector.engine.expiring import IN_MEMORY, StateStores
from detector.engine.records import Label


@dataclass(slots=True)
class PendingScore:
    """What the engine knew when it scored a transaction."""

    event_time: float
    customer_id: str
    terminal_id: str
    flagged: bool
    generation: int
    features: array


_PENDING_HEAD = struct.Struct("<d?qII")  # event time, flagged, generation, sizes of the two ids


class PendingCodec:
    """A pending score as bytes, for state on disk."""

    def encode(self, pending: PendingScore) -> bytes:
        customer, terminal = pending.customer_id.encode(), pending.terminal_id.encode()
        head = _PENDING_HEAD.pack(
            pending.event_time, pending.flagged, pending.generation, len(customer), len(terminal)
        )
        return b"".join((head, customer, terminal, pending.features.tobytes()))

    def decode(self, data: bytes) -> PendingScore:
        event_time, flagged, generation, customer_size, terminal_size = _PENDING_HEAD.unpack_from(data)
        at = _PENDING_HEAD.size
        customer = data[at : at + customer_size].decode()
        terminal = data[at + customer_size : at + customer_size + terminal_size].decode()
        features = array("d")
        features.frombytes(data[at + customer_size + terminal_size :])
        return PendingScore(event_time, customer, terminal, flagged, generation, features)


class NothingCodec:
    """The value of a set's entry (None), for state on disk."""

    def encode(self, value: None) -> bytes:
        return b""

    def decode(self, data: bytes) -> None:
        return None


class PendingScores:
    """Scored transactions awaiting their label, and recently labelled ids (to spot duplicates)."""

    def __init__(self, horizon: float, max_entries: int, stores: StateStores = IN_MEMORY) -> None:
        self._waiting = stores.expiring("pending", horizon, max_entries, PendingCodec())
        self._labelled = stores.expiring("pending_labelled", horizon, max_entries, NothingCodec())

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, transaction_id: str, pending: PendingScore) -> None:
        # Each decoded transaction brings its own copies of the card and terminal ids; interned, all
        # the scores waiting for one card or terminal share one string (about 50 bytes each saved).
        pending.customer_id = sys.intern(pending.customer_id)
        pending.terminal_id = sys.intern(pending.terminal_id)
        self._waiting.put(transaction_id, pending, pending.event_time)

    def peek(self, transaction_id: str) -> PendingScore | None:
        return self._waiting.get(transaction_id)

    def take(self, transaction_id: str, now: float) -> PendingScore | None:
        """Remove and return the pending entry; remember the id as labelled."""
        pending = self._waiting.pop(transaction_id)
        if pending is not None:
            self._labelled.put(transaction_id, None, now)
        return pending

    def was_labelled(self, transaction_id: str) -> bool:
        return transaction_id in self._labelled

    def expire(self, now: float) -> int:
        """Forget entries older than the horizon; returns how many waited in vain for a label."""
        self._labelled.evict(now)
        return self._waiting.evict(now)


class LabelQueue:
    """Labels ordered by timestamp (then arrival), released once event time has passed them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Label]] = []
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, label: Label) -> None:
        self._arrivals += 1
        heapq.heappush(self._heap, (label.event_time, self._arrivals, label))

    def pop_before(self, event_time: float) -> Iterator[Label]:
        """Labels stamped strictly before ``event_time``, oldest first."""
        heap = self._heap
        while heap and heap[0][0] < event_time:
            yield heapq.heappop(heap)[2]
