"""A partition's state directory held by another process: a spare one is used, and the spares that
killed processes left are deleted by the next start, never one a live process still holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from detector.service.state_files import StateFiles
from detector.state.database import StateDatabase

HOLD_S = 120.0  # the holder's life if never killed: a bound for a hung test, never a measure


def _hold(path: Path) -> subprocess.Popen[bytes]:
    """Another process holding the database at ``path`` open, until it is killed."""
    code = (
        "import sys, time; from pathlib import Path; from detector.state.database import StateDatabase;"
        f" db = StateDatabase(Path({str(path)!r})); print('open', flush=True); time.sleep({HOLD_S})"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
    return holder


def _spares(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir() if ".spare-" in path.name)


def test_a_held_directory_gives_a_spare_which_is_deleted_on_close(tmp_path: Path) -> None:
    holder = _hold(tmp_path / "0")
    try:
        files = StateFiles(tmp_path)
        database = files.open(0)
        assert database.path.name.startswith("0.spare-")
        files.close(database)
        assert _spares(tmp_path) == []
    finally:
        holder.kill()
        holder.wait()


def test_spares_left_by_killed_processes_are_deleted_at_the_next_start_unless_held(tmp_path: Path) -> None:
    abandoned = tmp_path / "0.spare-0badf00d"
    database = StateDatabase(abandoned)
    database.write([(b"k", b"v")], "lineage", "checkpoint")
    database.close()  # as a SIGKILL leaves it: nobody holds it, nobody will open it again
    (tmp_path / "1.spare-5ca1ab1e").mkdir()  # killed before RocksDB wrote a file
    held = tmp_path / "2.spare-11fe11fe"
    holder = _hold(held)
    try:
        StateFiles(tmp_path)
        assert _spares(tmp_path) == [held.name]
        assert holder.poll() is None  # its process carries on with it
    finally:
        holder.kill()
        holder.wait()
    StateFiles(tmp_path)  # its lock went with its process
    assert _spares(tmp_path) == []
