"""Resident memory of a child process, sampled on a thread, for tests that must show memory stays bounded."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.integration.background import BackgroundSampler

MB = 1024 * 1024

needs_proc = pytest.mark.skipif(
    sys.platform != "linux", reason="reads resident memory from /proc/<pid>/status"
)


def rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid``; None once it has exited (a zombie has no VmRSS line)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


class RssSampler(BackgroundSampler):
    """Samples ``(seconds since start, bytes)`` every ``interval`` s while used as a context manager.

    ``exited`` says whether the process was found gone during sampling: a crash between two checks
    of the test would otherwise go unseen.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(name=f"rss-{pid}")
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.exited = False

    def run(self) -> None:
        started = time.monotonic()
        while True:
            rss = rss_bytes(self.pid)
            if rss is None:
                self.exited = True
                return
            self.samples.append((time.monotonic() - started, rss))
            if self.stopping.wait(self.interval):
                return

    def peak(self) -> int:
        return max(rss for _, rss in self.samples)

    def between(self, start: float, end: float) -> list[int]:
        """The samples taken from ``start`` to ``end`` seconds after sampling began."""
        return [rss for at, rss in self.samples if start <= at < end]


def summary_mb(values: Sequence[int]) -> str:
    """``min/median/max`` in MB, for the printed figures."""
    return f"{min(values) / MB:.0f}/{statistics.median(values) / MB:.0f}/{max(values) / MB:.0f} MB"
