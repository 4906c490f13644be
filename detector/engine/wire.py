"""Shared updates and versions as bytes, for the internal topics of a scaled-out service.

One updates record holds the updates of one partition's transaction batch; one versions record
holds one :class:`SharedVersion`. Each is a two-byte tag, the length of an orjson header, the header,
then raw bytes: the float64 feature vectors of the ``Scored`` updates in order (about 8 bytes a
feature rather than ~20 as JSON text), or the pickled champion. Floats round-trip exactly.

>>> from array import array
>>> batch = [Scored(3, "t1", "c1", "m1", 200.0, 9.5, 0.1, False, 1, array("d", [1.0, 2.0])),
...          Labelled(3, "t0", "c1", True, 190.0), EpochClosed(0, 3)]
>>> decode_updates(encode_updates(batch)) == batch
True
"""

from __future__ import annotations

import pickle
import struct
from array import array
from collections.abc import Sequence
from typing import Any

import orjson

from detector.engine.outputs import EngineEvent
from detector.engine.shared import EpochClosed, Labelled, Scored, SharedUpdate, SharedVersion
from detector.engine.terminals import TerminalChange

_UPDATES, _VERSION = b"U1", b"V1"
_LENGTH = struct.Struct("<I")
_SCORED, _LABELLED, _CLOSED = "s", "l", "c"


def encode_updates(updates: Sequence[SharedUpdate]) -> bytes:
    """One record for a batch of one partition's updates, in their order."""
    rows: list[list[object]] = []
    vectors = array("d")
    for update in updates:
        if type(update) is Scored:
            rows.append(
                [
                    _SCORED,
                    update.epoch,
                    update.transaction_id,
                    update.customer_id,
                    update.terminal_id,
                    update.event_time,
                    update.amount,
                    update.score,
                    update.flagged,
                    update.generation,
                    len(update.features),
                ]
            )
            vectors.extend(update.features)
        elif type(update) is Labelled:
            rows.append(
                [
                    _LABELLED,
                    update.epoch,
                    update.transaction_id,
                    update.customer_id,
                    update.is_fraud,
                    update.event_time,
                ]
            )
        else:
            rows.append([_CLOSED, update.partition, update.epoch, update.idle])
    return _framed(_UPDATES, orjson.dumps(rows), vectors.tobytes())


def decode_updates(record: bytes) -> list[SharedUpdate]:
    """The updates :func:`encode_updates` wrote; ValueError for bytes it did not write."""
    header, tail = _unframed(_UPDATES, record)
    vectors = array("d")
    vectors.frombytes(tail)
    updates: list[SharedUpdate] = []
    position = 0
    for row in orjson.loads(header):
        kind = row[0]
        if kind == _SCORED:  # its nine fields before the features, then the features' width
            width = row[10]
            fields: list[Any] = [*row[1:10], vectors[position : position + width]]
            updates.append(Scored(*fields))
            position += width
        elif kind == _LABELLED:
            updates.append(Labelled(*row[1:]))
        else:
            updates.append(EpochClosed(*row[1:]))
    return updates


def encode_version(version: SharedVersion) -> bytes:
    """One record per version; the champion travels pickled (River models are pickled objects)."""
    header = {
        "epoch": version.epoch,
        "generation": version.generation,
        "drift_state": version.drift_state,
        "changes": [list(change) for change in version.terminal_changes],
        "events": [[e.kind, e.event_time, e.model_generation, e.detail] for e in version.events],
    }
    model = b"" if version.model is None else pickle.dumps(version.model, protocol=pickle.HIGHEST_PROTOCOL)
    return _framed(_VERSION, orjson.dumps(header), model)


def decode_version(record: bytes) -> SharedVersion:
    """The version :func:`encode_version` wrote (trusted data: the learner's own topic)."""
    header_bytes, model = _unframed(_VERSION, record)
    header = orjson.loads(header_bytes)
    return SharedVersion(
        epoch=header["epoch"],
        terminal_changes=tuple(TerminalChange(*change) for change in header["changes"]),
        model=pickle.loads(model) if model else None,
        generation=header["generation"],
        drift_state=header["drift_state"],
        events=tuple(EngineEvent(*event) for event in header["events"]),
    )


def _framed(tag: bytes, header: bytes, tail: bytes) -> bytes:
    return b"".join((tag, _LENGTH.pack(len(header)), header, tail))


def _unframed(tag: bytes, record: bytes) -> tuple[bytes, bytes]:
    if not record.startswith(tag) or len(record) < len(tag) + _LENGTH.size:
        raise ValueError(f"not a shared {'updates' if tag == _UPDATES else 'version'} record")
    start = len(tag) + _LENGTH.size
    (length,) = _LENGTH.unpack_from(record, len(tag))
    return record[start : start + length], record[start + length :]
