"""``fraud-detector demo`` as a user runs it: its own broker, detector and simulator, then a summary.

Each run is marked by a variable in its environment, which every process it starts inherits; after
the demo exits no process may carry the mark, whether the run ended or was interrupted.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.service_harness import wait_until

pytestmark = pytest.mark.kafka  # it starts a local broker: Java and the Kafka jars are needed
MARK = "FRAUD_DEMO_TEST_RUN"


STARTED: list[str] = []  # the run ids of this session's demos


def start_demo(output: Path, duration: float) -> tuple[subprocess.Popen[bytes], str]:
    run_id = uuid.uuid4().hex
    STARTED.append(run_id)
    with (output.parent / f"{output.name}.out").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "detector.cli",
                "demo",
                "--duration",
                str(duration),
                "--output",
                str(output),
            ],
            env={**os.environ, MARK: run_id},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_ctrl_c_as_at_a_terminal,  # noqa: PLW1509 (it only resets one signal)
        )
    return process, run_id


def _ctrl_c_as_at_a_terminal() -> None:
    """A test run started in the background (``cmd &`` in a script) ignores SIGINT, and so would the
    demo it starts: Python keeps an inherited SIG_IGN instead of raising KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def no_demo_left_running() -> Iterator[None]:
    """A test that fails before its demo ends must not leave the demo, its broker or detector behind.

    Only this session's demos: another session's, on the same machine, are none of its business.
    """
    yield
    for run_id in STARTED:
        for pid in processes_marked(run_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def processes_marked(run_id: str) -> list[int]:
    marked = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"{MARK}={run_id}".encode() in (entry / "environ").read_bytes():
                marked.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return marked


def count(pattern: str, text: str) -> list[int]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the summary:\n{text}"
    return [int(group.replace(",", "")) for group in match.groups()]


def test_the_demo_decides_everything_it_streamed_and_leaves_nothing_running(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    process, run_id = start_demo(output, duration=8)
    assert process.wait(timeout=180) == 0, (tmp_path / "demo.out").read_text()
    assert processes_marked(run_id) == []

    summary = (output / "summary.txt").read_text()
    assert summary in (tmp_path / "demo.out").read_text()
    (simulated,) = count(r"simulated\s+[\d.]+ event-time days: ([\d,]+) transactions", summary)
    (decided,) = count(r"decided\s+([\d,]+) transactions", summary)
    outcomes = count(r"decisions\s+approve ([\d,]+), review ([\d,]+), block ([\d,]+)", summary)
    assert decided == simulated == sum(outcomes) > 1_000
    assert count(r"dead letters\s+([\d,]+)", summary) == [0]
    assert re.search(r"prequential AUC\s+0\.\d{3} overall", summary)
    assert "<img" in (output / "report" / "report.html").read_text()


def test_an_interrupted_demo_stops_everything_it_started(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    process, run_id = start_demo(output, duration=300)
    log = tmp_path / "demo.out"
    wait_until(lambda: "streaming" in log.read_text() or process.poll() is not None, 120, "the stream")
    assert len(processes_marked(run_id)) >= 3  # the demo, its broker and its detector
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 130, log.read_text()
    assert processes_marked(run_id) == []
    assert not (output / "summary.txt").exists()


def test_an_interrupted_demo_whose_detector_and_broker_hang_still_stops_them(tmp_path: Path) -> None:
    """Frozen, the detector cannot stop gracefully nor the broker shut down: each is killed after a
    short grace, so the demo ends well before the 60 s and 30 s that its parts may take at most."""
    output = tmp_path / "demo"
    process, run_id = start_demo(output, duration=300)
    log = tmp_path / "demo.out"
    wait_until(lambda: "streaming" in log.read_text() or process.poll() is not None, 120, "the stream")
    children = [pid for pid in processes_marked(run_id) if pid != process.pid]
    assert len(children) >= 2  # its broker and its detector
    for pid in children:
        os.kill(pid, signal.SIGSTOP)  # a SIGTERM now waits for ever; only SIGKILL ends them
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=45) == 130, log.read_text()
    assert processes_marked(run_id) == []
