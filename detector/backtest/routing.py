"""Which input partition, and so which engine, a customer's events go to.

The producers key every message by ``customer_id`` and leave partitioning to librdkafka's default
partitioner, ``consistent_random``: the CRC-32 of the key modulo the partition count (a random
partition only for a message without a key, which the producers never send). The service runs one
engine per input partition, so a backtest with ``partitions`` engines routes the same way.

>>> partition_for("c1", 3) == partition_for("c1", 3)
True
>>> partition_for("anything", 1)
0
"""

from __future__ import annotations

import zlib


def partition_for(customer_id: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner picks for a message keyed ``customer_id``."""
    return zlib.crc32(customer_id.encode()) % partitions
