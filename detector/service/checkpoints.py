"""Engine snapshots in a compacted Kafka topic, written in the same transaction as the offsets.

A checkpoint of input partition ``p`` is a manifest (the checkpoint id, the input offsets it
corresponds to, the number of chunks and their SHA-256) plus the snapshot cut into chunks, all in
partition ``p`` of the checkpoint topic. Because the service writes them inside the Kafka
transaction that also commits the input offsets, a committed checkpoint always matches committed
input: a crash can lose the open transaction, never a half-written checkpoint.

Keys are ``p/manifest`` and ``p/chunk/i``: compaction keeps the latest of each, and a chunk left
over from an older, longer snapshot is ignored because its checkpoint id does not match.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, Producer

from detector.service.reading import read_to_end

CHUNK_BYTES = 900 * 1024
_HEADER_ID = "checkpoint_id"


@dataclass(frozen=True)
class Checkpoint:
    """A restored snapshot and the next input offsets to read after it, by role."""

    snapshot: bytes
    offsets: dict[str, int]
    checkpoint_id: str


def write_checkpoint(
    producer: Producer, topic: str, partition: int, snapshot: bytes, offsets: dict[str, int]
) -> str:
    """Produce one checkpoint (inside the caller's open transaction); returns its id."""
    checkpoint_id = uuid.uuid4().hex
    chunks = [snapshot[i : i + CHUNK_BYTES] for i in range(0, len(snapshot), CHUNK_BYTES)] or [b""]
    headers = [(_HEADER_ID, checkpoint_id.encode())]
    for index, chunk in enumerate(chunks):
        producer.produce(topic, chunk, key=f"{partition}/chunk/{index}", partition=partition, headers=headers)
    manifest = {
        "checkpoint_id": checkpoint_id,
        "chunks": len(chunks),
        "sha256": hashlib.sha256(snapshot).hexdigest(),
        "offsets": offsets,
    }
    producer.produce(topic, orjson.dumps(manifest), key=f"{partition}/manifest", partition=partition)
    return checkpoint_id


def load_checkpoint(consumer: Consumer, topic: str, partition: int) -> Checkpoint | None:
    """The latest committed checkpoint of ``partition``, or None if there is none (or it is unusable)."""
    latest: dict[str, tuple[bytes, str | None]] = {}
    for message in read_to_end(consumer, topic, partition, start=0):
        header = dict(message.headers() or []).get(_HEADER_ID)
        latest[(message.key() or b"").decode()] = (
            message.value() or b"",
            header.decode() if header else None,
        )
    return _assemble(latest, partition)


def _assemble(latest: dict[str, tuple[bytes, str | None]], partition: int) -> Checkpoint | None:
    manifest_entry = latest.get(f"{partition}/manifest")
    if manifest_entry is None:
        return None
    manifest = orjson.loads(manifest_entry[0])
    parts = []
    for index in range(manifest["chunks"]):
        chunk = latest.get(f"{partition}/chunk/{index}")
        if chunk is None or chunk[1] != manifest["checkpoint_id"]:
            return None
        parts.append(chunk[0])
    snapshot = b"".join(parts)
    if hashlib.sha256(snapshot).hexdigest() != manifest["sha256"]:
        return None
    return Checkpoint(snapshot=snapshot, offsets=manifest["offsets"], checkpoint_id=manifest["checkpoint_id"])
