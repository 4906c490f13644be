"""The publishing loop shared by the simulator and the replay: pace, send, show progress, report."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from tqdm import tqdm

from detector.engine.records import Label, Transaction
from producers.pacing import Pacer
from producers.sinks import Sink

_PROGRESS_EVERY = 1000  # events between progress bar updates; updating on every event costs time


class Progress:
    """A progress bar with transaction and label counts and the event rate, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self._bar = tqdm(unit=" events", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self.transactions = 0
        self.labels = 0
        self._shown = 0

    def count(self, event: Transaction | Label) -> None:
        if isinstance(event, Label):
            self.labels += 1
        else:
            self.transactions += 1
        if self.transactions + self.labels - self._shown >= _PROGRESS_EVERY:
            self.refresh()

    def refresh(self) -> None:
        total = self.transactions + self.labels
        self._bar.set_postfix(transactions=self.transactions, labels=self.labels, refresh=False)
        self._bar.update(total - self._shown)
        self._shown = total

    def close(self) -> None:
        self.refresh()
        self._bar.close()


def progress_enabled(quiet: bool, stream: TextIO | None = None) -> bool:
    return not quiet and (stream or sys.stderr).isatty()


def publish(events: Iterable[Transaction | Label], sink: Sink, pacer: Pacer, progress: Progress) -> None:
    """Send ``events`` in order, each when the pacer says it is due."""
    try:
        for event in events:
            pacer.wait(event.event_time)
            if isinstance(event, Label):
                sink.send_label(event)
            else:
                sink.send_transaction(event)
            progress.count(event)
    finally:
        progress.close()


def print_summary(counts: dict[str, object], stream: TextIO | None = None) -> None:
    width = max(map(len, counts), default=0)
    for name, value in counts.items():
        print(f"{name + ':':<{width + 1}} {value}", file=stream or sys.stdout)
