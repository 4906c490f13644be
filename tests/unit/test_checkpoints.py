"""Assembling a checkpoint from the latest record of each key: intact ones restore, damaged ones say why."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson
import pytest

from detector.service.checkpoints import assemble

SNAPSHOT = b"engine state " * 10


def _written(chunks: int = 2, **manifest_changes: object) -> dict[str, tuple[bytes, str | None]]:
    """What the checkpoint topic holds for partition 3 after one checkpoint in ``chunks`` pieces."""
    size = -(-len(SNAPSHOT) // chunks)
    latest: dict[str, tuple[bytes, str | None]] = {
        f"3/chunk/{i}": (SNAPSHOT[i * size : (i + 1) * size], "c1") for i in range(chunks)
    }
    manifest = {
        "checkpoint_id": "c1",
        "chunks": chunks,
        "sha256": hashlib.sha256(SNAPSHOT).hexdigest(),
        "offsets": {"transactions": 40, "labels": 12},
        **manifest_changes,
    }
    latest["3/manifest"] = (orjson.dumps(manifest), None)
    return latest


def test_an_intact_checkpoint_is_assembled_from_its_chunks() -> None:
    checkpoint = assemble(_written(), 3)
    assert checkpoint is not None
    assert checkpoint.snapshot == SNAPSHOT and checkpoint.checkpoint_id == "c1"
    assert checkpoint.offsets == {"transactions": 40, "labels": 12}


def test_no_manifest_is_no_checkpoint() -> None:
    latest = _written()
    del latest["3/manifest"]
    assert assemble(latest, 3) is None
    assert assemble(_written(), 4) is None  # another partition's


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda w: w.update({"3/manifest": (b"\x00\xff", None)}), "malformed: not JSON"),
        (lambda w: w.update({"3/manifest": (b"[1, 2]", None)}), "malformed: not a JSON object"),
        (lambda w: w.update(_written(chunks=True)), "chunks is missing or not of type int"),
        (lambda w: w.update(_written(offsets=[40])), "offsets is missing or not of type dict"),
        (lambda w: w.update(_written(offsets={"transactions": "40"})), "offsets are not all integers"),
        (lambda w: w.update(_written(sha256=None)), "sha256 is missing or not of type str"),
        (lambda w: w.pop("3/chunk/1"), "chunk 1 of 2 is missing"),
        (lambda w: w.update({"3/chunk/1": (b"x", "c0")}), "chunk 1 of 2 is missing"),  # an older one
        (lambda w: w.update({"3/chunk/1": (b"x", "c1")}), "do not match the manifest's SHA-256"),
    ],
)
def test_a_damaged_checkpoint_is_refused_with_what_is_wrong(
    damage: Callable[[dict[str, tuple[bytes, str | None]]], object], problem: str
) -> None:
    latest = _written()
    damage(latest)
    with pytest.raises(ValueError, match=problem):
        assemble(latest, 3)


def test_a_named_checkpoint_is_found_by_its_name_and_keeps_its_extra_figures() -> None:
    """The learner's state sits beside partition 0's under its own name, with the service's figures."""
    latest = {key.replace("3/", "learner/"): value for key, value in _written().items()}
    manifest, header = latest["learner/manifest"]
    latest["learner/manifest"] = (
        orjson.dumps({**orjson.loads(manifest), "extra": {"audited_version": 7}}),
        header,
    )
    checkpoint = assemble({**latest, **_written()}, "learner")
    assert checkpoint is not None and checkpoint.extra == {"audited_version": 7}
    partition_3 = assemble({**latest, **_written()}, 3)
    assert partition_3 is not None and partition_3.extra == {}


def test_extra_figures_that_are_not_integers_are_refused() -> None:
    with pytest.raises(ValueError, match="extra is not an object of integers"):
        assemble(_written(extra={"audited_version": "seven"}), 3)
