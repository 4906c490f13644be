"""Partitions recovered at the same time, each with a reader of its own; a recovered partition's
first checkpoint comes soon, once."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from detector.service import partitions as partitions_module
from detector.service.parallel_recovery import recover_each
from detector.service.partitions import Partitions


def test_partitions_are_recovered_at_the_same_time_each_with_its_own_reader() -> None:
    readers: list[Any] = [object(), object(), object()]
    all_in_flight = threading.Barrier(3, timeout=30)  # broken unless three recoveries overlap
    in_use: set[int] = set()
    lock = threading.Lock()

    def recover(partition: int, reader: Any) -> tuple[int, int]:
        with lock:
            assert id(reader) not in in_use, "a reader serves one recovery at a time"
            in_use.add(id(reader))
        all_in_flight.wait()
        with lock:
            in_use.discard(id(reader))
        return partition, readers.index(reader)

    results = recover_each([2, 0, 1], readers, recover)
    assert list(results) == [2, 0, 1]
    assert {reader for _, reader in results.values()} == {0, 1, 2}


def test_more_partitions_than_readers_wait_for_a_free_one_and_the_first_failure_is_raised() -> None:
    recovered: list[int] = []

    def recover(partition: int, reader: Any) -> int:
        recovered.append(partition)
        if partition in (3, 5):
            raise ValueError(f"partition {partition}")
        return partition

    with pytest.raises(ValueError, match="partition 3"):
        recover_each(list(range(8)), [object(), object()], recover)
    assert sorted(recovered) == list(range(8)), "every recovery runs to its end before the raise"


def test_a_recovered_partition_is_due_for_its_first_checkpoint_once(monkeypatch: pytest.MonkeyPatch) -> None:
    owned = Partitions()
    owned.assign(SimpleNamespace(partition=0), None)  # type: ignore[arg-type]
    assert owned.first_checkpoints_due() == []  # not yet: FIRST_CHECKPOINT_AFTER_S after recovery
    monkeypatch.setattr(partitions_module, "FIRST_CHECKPOINT_AFTER_S", 0.0)
    owned.assign(SimpleNamespace(partition=1), None)  # type: ignore[arg-type]
    assert owned.first_checkpoints_due() == [1]
    assert owned.first_checkpoints_due() == []
