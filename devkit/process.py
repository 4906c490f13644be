"""``fraud-detector run`` as a child process: its own interpreter and GIL, configured by environment,
as deployed; its JSON log in a file, read back for what it did (assignment, recovery, stop).

Every one started is remembered until stopped or killed, so that a caller failing before its own
``stop()`` cannot leave a service running (see :meth:`ServiceProcess.kill_leftovers`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import orjson


class ServiceProcess:
    """The service (``command``: ``run``, or ``learn`` for the shared learner) with ``env`` over this
    process's environment; stopped by SIGTERM, its graceful path."""

    running: ClassVar[set[ServiceProcess]] = set()

    def __init__(self, env: Mapping[str, str], log_path: Path, command: str = "run") -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:  # appended: a restarted service's log follows the first's
            self.process = subprocess.Popen(
                [sys.executable, "-m", "detector.cli", command],
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},  # its log is read while it runs
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ServiceProcess.running.add(self)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (checkpoint, leave the group) and the exit code; SIGKILL if it has not ended in time."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()
        finally:
            ServiceProcess.running.discard(self)

    def kill(self) -> int:
        """SIGKILL: no chance to finish anything."""
        self.process.kill()
        code = self.process.wait(30)
        ServiceProcess.running.discard(self)
        return code

    @classmethod
    def kill_leftovers(cls) -> None:
        """Kill every service still running because its caller failed before stopping it."""
        for service in list(cls.running):
            service.kill()

    def log_events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Log entries so far, all of them or those whose ``event`` is ``name``."""
        entries = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and (name is None or entry.get("event") == name):
                entries.append(entry)
        return entries

    def ready_partitions(self) -> set[int]:
        """Partitions assigned to this instance and recovered since, as its log tells."""
        owned: set[int] = set()
        recovering: set[int] = set()
        for entry in self.log_events():
            event = entry.get("event")
            if event == "partitions_assigned":
                owned = set(entry["partitions"])
                recovering = set(owned)
            elif event in ("partitions_revoked", "partitions_lost"):
                owned -= set(entry["partitions"])
            elif event == "partition_recovered":
                recovering.discard(entry["partition"])
        return owned - recovering
