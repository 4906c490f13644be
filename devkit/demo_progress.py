"""The demo's progress line, from the service's own ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TextIO

from detector.engine import outputs
from detector.service.metrics_page import MetricsPage

DRIFT_SIGNALS = (outputs.DRIFT_WARNING, outputs.DRIFT_DETECTED)


@dataclass(frozen=True)
class Reading:
    """What the progress line shows, from one scrape of the service's metrics."""

    seconds: float
    consumed: float
    decisions: float
    alerts: float
    drift_signals: float
    generation: float
    lag: float

    @classmethod
    def read(cls, page: MetricsPage, seconds: float) -> Reading:
        generations = [s.value for s in page.samples if s.name == "fraud_model_generation"]
        return cls(
            seconds=seconds,
            consumed=page.total("fraud_records_consumed_total"),
            decisions=page.total("fraud_decisions_total"),
            alerts=page.total("fraud_decisions_total", outcome="review")
            + page.total("fraud_decisions_total", outcome="block"),
            drift_signals=sum(page.total("fraud_engine_events_total", kind=kind) for kind in DRIFT_SIGNALS),
            generation=max(generations, default=1),
            lag=page.total("fraud_consumer_lag"),
        )


class ProgressLine:
    """One line rewritten in place on a terminal; elsewhere (CI, a file) a line every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 1.0 if self.tty else 5.0
        self._last: Reading | None = None

    def show(self, now: Reading, day: float) -> None:
        last = self._last or replace(now, seconds=0.0, consumed=0.0)
        rate = (now.consumed - last.consumed) / max(now.seconds - last.seconds, 1e-9)
        self._last = now
        text = (
            f"{now.seconds:5.0f}s  day {day:4.1f}  {rate:6,.0f} events/s  decisions {now.decisions:8,.0f}"
            f"  alerts {now.alerts:6,.0f}  drift signals {now.drift_signals:3.0f}"
            f"  model generation {now.generation:.0f}  lag {now.lag:6,.0f}"
        )
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()
