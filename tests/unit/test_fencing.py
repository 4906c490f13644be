"""A fenced consumer is answered by one rejoin per window; a second fencing within it ends the process."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from detector.service import fencing
from detector.service.fencing import FenceTolerance, consumer_fenced


def test_one_fencing_per_window_is_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    tolerance = FenceTolerance()
    assert tolerance.tolerated()
    assert not tolerance.tolerated()  # again at once: another process holds the id
    monkeypatch.setattr(fencing, "FENCE_WINDOW_S", 0.0)
    assert tolerance.tolerated()


def test_only_the_consumers_fatal_error_counts_as_fenced() -> None:
    assert consumer_fenced(KafkaError(KafkaError._FATAL, "Static consumer fenced"))
    assert not consumer_fenced(KafkaError(KafkaError._TRANSPORT, "broker down"))
    assert not consumer_fenced(KafkaError(KafkaError._PARTITION_EOF))
