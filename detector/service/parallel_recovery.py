"""Recovering several partitions at the same time, each with a reader of its own.

A partition's recovery is mostly waiting on the broker: reading its latest checkpoint and the tail
of its audit partition, fetching watermarks. One after another, three partitions took about 2 s
each after a restart, and nothing was decided until the last was done. A consumer serves one
reading at a time, so each partition in flight gets its own reader; librdkafka releases the GIL
while it waits, so the readings overlap (restoring the engines, in Python, does not).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
Reader = TypeVar("Reader")  # a Consumer in the service
MOST_AT_ONCE = 4  # partitions read at the same time, each with a reader (a connection) of its own


def recover_each(
    partitions: list[int], readers: list[Reader], recover: Callable[[int, Reader], T]
) -> dict[int, T]:
    """``recover(partition, reader)`` for every partition, at most ``len(readers)`` at once.

    Every recovery runs to its end before this returns; the first failure, in partition order, is
    raised then.
    """
    if len(partitions) <= 1 or len(readers) <= 1:
        return {partition: recover(partition, readers[0]) for partition in partitions}
    free: queue.SimpleQueue[Reader] = queue.SimpleQueue()
    for reader in readers:
        free.put(reader)

    def with_a_reader(partition: int) -> T:
        reader = free.get()
        try:
            return recover(partition, reader)
        finally:
            free.put(reader)

    with ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="recovery") as pool:
        futures = {partition: pool.submit(with_a_reader, partition) for partition in partitions}
    return {partition: future.result() for partition, future in futures.items()}
