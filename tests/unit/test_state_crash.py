"""A process killed at any moment leaves its database at a whole checkpoint, which its snapshot
restores to continue exactly as an engine that never stopped: nothing is ever half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detector.engine.engine import DetectionEngine
from detector.state.database import StateDatabase
from tests.unit.test_engine import feed
from tests.unit.test_state_store import CONFIG, counters, lossy_stream

ROOT = Path(__file__).resolve().parents[2]
CHUNK, TRANSACTIONS, REST, SEED = 150, 12_000, 600, 11  # items per checkpoint, stream, compared after it
SAFETY = 300.0  # seconds: a stop for a hung child, never a measure


def run_child(directory: str, die_after_write: int = 0) -> None:
    """The service's checkpoint cycle in a loop. Each snapshot goes to ``next`` before the database
    write, and replaces ``saved`` after it; a kill may come at any point (or, for checkpoint
    ``die_after_write``, right after the database write). The last ``REST`` items are left for the
    parent to compare with, and the child waits there to be killed, however late that comes."""
    root = Path(directory)
    items = lossy_stream(TRANSACTIONS, SEED)[:-REST]
    db = StateDatabase(root / "db", cache_entries=3)
    lineage = db.reset()
    engine = DetectionEngine(CONFIG, db)
    for n, start in enumerate(range(0, len(items), CHUNK), 1):
        feed(engine, items[start : start + CHUNK])
        changes = db.drain()
        (root / "next").write_bytes(f"{n}\n".encode() + engine.snapshot(db))
        db.write(changes, lineage, str(n))
        if n == die_after_write:
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(root / "next", root / "saved")
    time.sleep(SAFETY)


def start(directory: Path, die_after_write: int = 0) -> subprocess.Popen[bytes]:
    code = (
        f"from tests.unit.test_state_crash import run_child; run_child({str(directory)!r}, {die_after_write})"
    )
    with (directory / "child.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def snapshot_in(path: Path) -> tuple[int, bytes]:
    """(checkpoint number, snapshot) of a file the child wrote."""
    number, snapshot = path.read_bytes().split(b"\n", 1)
    return int(number), snapshot


def saved_number(directory: Path) -> int:
    try:
        with (directory / "saved").open("rb") as file:
            return int(file.readline())
    except FileNotFoundError:
        return 0


def check_recovery(directory: Path, child: subprocess.Popen[bytes]) -> tuple[int, bool]:
    """Restore the checkpoint the database names and compare with an engine that never stopped;
    (checkpoint number, whether the database was one checkpoint ahead of the saved snapshot)."""
    try:
        child.wait(timeout=SAFETY)
    finally:
        if child.poll() is None:  # hung: stop it, and fail
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    log = (directory / "child.log").read_text(errors="replace")
    assert child.returncode in (-signal.SIGKILL, 0), f"the child failed on its own:\n{log}"
    number, snapshot = snapshot_in(directory / "saved")
    db = StateDatabase(directory / "db", cache_entries=3)
    assert db.lineage is not None and db.checkpoint_id is not None
    current = int(db.checkpoint_id)
    ahead = current == number + 1  # killed between the database write and replacing the snapshot
    if ahead:
        number, snapshot = snapshot_in(directory / "next")  # complete: written before the database
    assert current == number, f"the database names checkpoint {current}, the snapshots {number}"
    items = lossy_stream(TRANSACTIONS, SEED)
    done = min(number * CHUNK, len(items) - REST)  # the last chunk may be short
    reference = DetectionEngine(CONFIG)
    feed(reference, items[:done])
    restored = DetectionEngine.restore(snapshot, db)
    assert restored.gauges() == reference.gauges() and restored.stats == reference.stats
    rest = items[done : done + REST]
    assert feed(restored, rest) == feed(reference, rest)
    assert restored.stats == reference.stats and counters(restored) == counters(reference)
    db.close()
    return number, ahead


@pytest.mark.parametrize("run", range(3))
def test_a_kill_at_a_random_moment_leaves_a_whole_checkpoint(tmp_path: Path, run: int) -> None:
    target, delay = random.randint(3, 8), random.uniform(0.0, 0.3)
    print(f"run {run}: killed {delay:.3f} s after checkpoint {target} was saved")  # shown on failure
    child, deadline = start(tmp_path), time.monotonic() + SAFETY
    while saved_number(tmp_path) < target and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    number, ahead = check_recovery(tmp_path, child)
    print(f"killed at checkpoint {number}, database ahead of the snapshot: {ahead}")
    assert number >= target


def test_a_kill_between_the_database_write_and_the_snapshot_leaves_the_next_checkpoint(
    tmp_path: Path,
) -> None:
    """The narrow window a random kill seldom hits: the database is a checkpoint ahead."""
    assert check_recovery(tmp_path, start(tmp_path, die_after_write=4)) == (4, True)
