"""When to send each event: as fast as possible, at a fixed rate, or at a multiple of real time.

Pacers compute absolute due times from the first event, so small sleeps that run late do not add
up to drift. Pacing on event time keeps the gaps of the stream (bursts stay bursts), and the clock
is injected so tests can check the sleeps without waiting.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Pacer(Protocol):
    def wait(self, event_time: float) -> None:
        """Block until the next event, stamped ``event_time``, is due."""


class Unpaced:
    """As fast as the sink takes events."""

    def wait(self, event_time: float) -> None:
        return None


class _Scheduled:
    """Sleeps until an absolute due time; skips sleeps shorter than ``min_sleep`` (the OS would
    oversleep them) and catches up on the next ones."""

    def __init__(self, clock: Clock, min_sleep: float) -> None:
        self.clock = clock
        self.min_sleep = min_sleep
        self.origin: float | None = None

    def _sleep_until(self, offset: float) -> None:
        if self.origin is None:
            self.origin = self.clock.now()
        delay = self.origin + offset - self.clock.now()
        if delay > 0 and delay >= self.min_sleep:
            self.clock.sleep(delay)


class RatePacer(_Scheduled):
    """``events_per_second`` events a second, whatever their event times."""

    def __init__(
        self, events_per_second: float, clock: Clock | None = None, min_sleep: float = 0.002
    ) -> None:
        if events_per_second <= 0:
            raise ValueError("the rate must be above 0 events per second")
        super().__init__(clock or MonotonicClock(), min_sleep)
        self.interval = 1.0 / events_per_second
        self.sent = 0

    def wait(self, event_time: float) -> None:
        self._sleep_until(self.sent * self.interval)
        self.sent += 1


class EventTimePacer(_Scheduled):
    """Real time times ``speed``: events ``d`` seconds apart in event time go out ``d / speed``
    seconds apart (speed 1 is real time, 3600 plays an hour a second)."""

    def __init__(self, speed: float, clock: Clock | None = None, min_sleep: float = 0.002) -> None:
        if speed <= 0:
            raise ValueError("the speed must be above 0")
        super().__init__(clock or MonotonicClock(), min_sleep)
        self.speed = speed
        self.first_event_time: float | None = None

    def wait(self, event_time: float) -> None:
        if self.first_event_time is None:
            self.first_event_time = event_time
        self._sleep_until(max(event_time - self.first_event_time, 0.0) / self.speed)
