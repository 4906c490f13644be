"""A sampler that runs on a daemon thread for the duration of a ``with`` block."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self


class BackgroundSampler:
    """Starts :meth:`run` on a thread on entry; on exit sets ``stopping``, joins, then :meth:`close`.

    ``run`` loops until ``stopping`` is set (or returns early, e.g. once its subject is gone).
    """

    def __init__(self, name: str) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stopping.set()
        self._thread.join()
        self.close()

    def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sampler holds, after its thread has stopped."""
