"""Engine snapshots in a compacted Kafka topic, written in the same transaction as the offsets.

A checkpoint of input partition ``p`` is a manifest (the checkpoint id, the input offsets it
corresponds to, the number of chunks and their SHA-256) plus the snapshot cut into chunks, all in
partition ``p`` of the checkpoint topic. Because the service writes them inside the Kafka
transaction that also commits the input offsets, a committed checkpoint always matches committed
input: a crash can lose the open transaction, never a half-written checkpoint.

Keys are ``p/manifest`` and ``p/chunk/i`` (or, for a state that is not an input partition's, such
as the shared learner's, ``name/manifest`` and ``name/chunk/i``): compaction keeps the latest of
each, and a chunk left over from an older, longer snapshot is ignored because its checkpoint id
does not match. Before them, ``p/state/<key>``: what changed in the partition's state on disk since
its last checkpoint, one record per entry (a deletion as a tombstone), so the topic also holds
that state, from which recovery rebuilds a lost local copy (docs/state.md).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import orjson
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Producer

from detector.service.reading import read_to_end, watermarks
from detector.state.stored import Change

CHUNK_BYTES = 900 * 1024
_HEADER_ID, _HEADER_LINEAGE = "checkpoint_id", "lineage"
_STATE = "state/"  # key infix of the state changes: name/state/<key in the state database>
Headers = list[tuple[str, str | bytes | None]]  # as Producer.produce takes them


@dataclass(frozen=True)
class StateChanges:
    """What changed in a partition's state on disk since its last checkpoint, and its lineage."""

    lineage: str
    changes: list[Change]


@dataclass(frozen=True)
class Checkpoint:
    """A restored snapshot and the next input offsets to read after it, by role."""

    snapshot: bytes
    offsets: dict[str, int]
    checkpoint_id: str
    written_at: float | None = None  # the manifest's Kafka timestamp (epoch seconds), if it has one
    extra: dict[str, int] = field(default_factory=dict)  # what the service keeps beside the snapshot
    lineage: str | None = None  # the state on disk it goes with (detector/state/database.py), if any


def write_checkpoint(
    producer: Producer,
    topic: str,
    partition: int,
    snapshot: bytes,
    offsets: dict[str, int],
    *,
    name: str | None = None,
    extra: dict[str, int] | None = None,
    state: StateChanges | None = None,
) -> str:
    """Produce one checkpoint (inside the caller's open transaction) under ``name`` (by default
    the partition number), with ``extra`` figures of the service's own and the ``state`` changes
    on disk since the last one; returns its id."""
    name = name or str(partition)
    checkpoint_id = uuid.uuid4().hex
    if state is not None:
        prefix = f"{name}/{_STATE}".encode()
        lineage: Headers = [(_HEADER_LINEAGE, state.lineage.encode())]
        for key, value in state.changes:
            _produce(producer, topic, value, key=prefix + key, partition=partition, headers=lineage)
    chunks = [snapshot[i : i + CHUNK_BYTES] for i in range(0, len(snapshot), CHUNK_BYTES)] or [b""]
    headers: Headers = [(_HEADER_ID, checkpoint_id.encode())]
    for index, chunk in enumerate(chunks):
        _produce(
            producer, topic, chunk, key=f"{name}/chunk/{index}".encode(), partition=partition, headers=headers
        )
    manifest = {
        "checkpoint_id": checkpoint_id,
        "chunks": len(chunks),
        "sha256": hashlib.sha256(snapshot).hexdigest(),
        "offsets": offsets,
        **({"extra": extra} if extra else {}),
        **({"lineage": state.lineage} if state is not None else {}),
    }
    _produce(producer, topic, orjson.dumps(manifest), key=f"{name}/manifest".encode(), partition=partition)
    return checkpoint_id


def _produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    *,
    key: bytes,
    partition: int,
    headers: Headers | None = None,
) -> None:
    """Produce, waiting out a full local queue: a checkpoint's changes can outnumber it."""
    while True:
        try:
            producer.produce(topic, value, key=key, partition=partition, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def load_checkpoint(
    consumer: Consumer, topic: str, partition: int, name: str | None = None
) -> Checkpoint | None:
    """The latest committed checkpoint named ``name`` (by default the partition number) in
    ``partition``, or None if there is none.

    Read from the end, in growing spans: the latest manifest follows the chunks it names (they are
    written in one transaction), and the partition holds every checkpoint written since its last
    compaction. Read from the start, a crash loop's dozens of checkpoints of several MB each made
    every recovery read hundreds of MB, longer with every restart.

    Raises ValueError, saying what is wrong, if the latest one is damaged (say a manifest written
    by hand): the caller rebuilds the state from the input rather than stopping on it.
    """
    key = str(name or partition)
    low, high = watermarks(consumer, topic, partition)
    span = _FIRST_SPAN
    while True:
        start = max(low, high - span)
        latest, written_at = _latest_values(consumer, topic, partition, start, key)
        if start <= low or _complete(latest, key):
            checkpoint = assemble(latest, key)
            return replace(checkpoint, written_at=written_at) if checkpoint is not None else None
        span *= 8


_FIRST_SPAN = 64  # records: a checkpoint of up to about 50 MB, with its transaction markers


def _latest_values(
    consumer: Consumer, topic: str, partition: int, start: int, name: str
) -> tuple[dict[str, tuple[bytes, str | None]], float | None]:
    """The latest value and checkpoint id header of each key from ``start`` on, and the Kafka
    timestamp (epoch seconds) of the latest manifest of checkpoint ``name`` among them."""
    latest: dict[str, tuple[bytes, str | None]] = {}
    written_at = None
    for message in read_to_end(consumer, topic, partition, start=start):
        header = dict(message.headers() or []).get(_HEADER_ID)
        key = (message.key() or b"").decode(errors="replace")
        latest[key] = (
            message.value() or b"",
            header.decode(errors="replace") if isinstance(header, bytes) else None,
        )
        if key == f"{name}/manifest":
            kind, milliseconds = message.timestamp()
            written_at = None if kind == TIMESTAMP_NOT_AVAILABLE else milliseconds / 1000.0
    return latest, written_at


def _complete(latest: dict[str, tuple[bytes, str | None]], name: str) -> bool:
    """Whether ``latest`` holds checkpoint ``name``'s manifest and every chunk it names (a damaged
    manifest counts as complete: reading further back would not mend it)."""
    manifest = latest.get(f"{name}/manifest")
    if manifest is None:
        return False
    try:
        checkpoint_id, chunks, *_ = _manifest(manifest[0], name)
    except ValueError:
        return True
    chunk_ids = (latest.get(f"{name}/chunk/{index}", (b"", None))[1] for index in range(chunks))
    return all(chunk_id == checkpoint_id for chunk_id in chunk_ids)


def assemble(latest: dict[str, tuple[bytes, str | None]], name: int | str) -> Checkpoint | None:
    """The checkpoint ``name`` (a partition number, or a name) in ``latest`` (key -> value and
    checkpoint id header, the latest of each key).

    >>> chunk = (b"state", "c1")
    >>> manifest = {"checkpoint_id": "c1", "chunks": 1, "offsets": {"transactions": 7},
    ...             "sha256": hashlib.sha256(b"state").hexdigest()}
    >>> assemble({"0/manifest": (orjson.dumps(manifest), None), "0/chunk/0": chunk}, "0").offsets
    {'transactions': 7}
    >>> assemble({"0/manifest": (b"{", None)}, "0")
    Traceback (most recent call last):
    ...
    ValueError: checkpoint manifest of partition 0 is malformed: not JSON
    """
    name = str(name)
    manifest_entry = latest.get(f"{name}/manifest")
    if manifest_entry is None:
        return None
    checkpoint_id, chunks, sha256, offsets, extra, lineage = _manifest(manifest_entry[0], name)
    parts = []
    for index in range(chunks):
        chunk = latest.get(f"{name}/chunk/{index}")
        if chunk is None or chunk[1] != checkpoint_id:
            raise ValueError(f"checkpoint {checkpoint_id}: chunk {index} of {chunks} is missing")
        parts.append(chunk[0])
    snapshot = b"".join(parts)
    if hashlib.sha256(snapshot).hexdigest() != sha256:
        raise ValueError(f"checkpoint {checkpoint_id}: the chunks do not match the manifest's SHA-256")
    return Checkpoint(
        snapshot=snapshot, offsets=offsets, checkpoint_id=checkpoint_id, extra=extra, lineage=lineage
    )


def _manifest(value: bytes, name: str) -> tuple[str, int, str, dict[str, int], dict[str, int], str | None]:
    """The manifest's checkpoint id, chunk count, SHA-256, offsets, extra figures and state lineage,
    each of the type written."""
    owner = f"of partition {name}" if name.isdigit() else name
    problem = f"checkpoint manifest {owner} is malformed"
    try:
        manifest = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError(f"{problem}: not JSON") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{problem}: not a JSON object")
    fields = {"checkpoint_id": str, "chunks": int, "sha256": str, "offsets": dict}
    for key, kind in fields.items():
        if type(manifest.get(key)) is not kind:  # exact types: JSON's true is no chunk count
            raise ValueError(f"{problem}: {key} is missing or not of type {kind.__name__}")
    offsets, extra = manifest["offsets"], manifest.get("extra", {})
    if not all(type(offset) is int for offset in offsets.values()):
        raise ValueError(f"{problem}: offsets are not all integers")
    if type(extra) is not dict or not all(type(value) is int for value in extra.values()):
        raise ValueError(f"{problem}: extra is not an object of integers")
    lineage = manifest.get("lineage")
    if lineage is not None and type(lineage) is not str:
        raise ValueError(f"{problem}: lineage is not a string")
    return manifest["checkpoint_id"], manifest["chunks"], manifest["sha256"], offsets, extra, lineage


def read_state_changes(
    consumer: Consumer, topic: str, partition: int, lineage: str, name: str | None = None
) -> Iterator[Change]:
    """The state changes of ``lineage`` that checkpoints named ``name`` wrote to ``partition``, in
    the order written: applied in turn, they give the state of the latest checkpoint. Changes of
    another lineage (a state the partition abandoned) are passed over."""
    prefix = f"{name or partition}/{_STATE}".encode()
    wanted = lineage.encode()
    low, _ = watermarks(consumer, topic, partition)
    for message in read_to_end(consumer, topic, partition, start=low):
        key = message.key() or b""
        if key.startswith(prefix) and dict(message.headers() or []).get(_HEADER_LINEAGE) == wanted:
            yield key[len(prefix) :], message.value()
