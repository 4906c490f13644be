"""Pacing with an injected clock: the right sleeps, without waiting."""

from __future__ import annotations

import time

import pytest

from producers.pacing import EventTimePacer, RatePacer, Unpaced


class FakeClock:
    def __init__(self) -> None:
        self.time = 100.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.time += seconds


def test_event_time_pacing_keeps_the_gaps_divided_by_the_speed() -> None:
    clock = FakeClock()
    pacer = EventTimePacer(speed=10, clock=clock)
    for event_time in (5000.0, 5000.0, 5010.0, 5030.0, 5030.0, 5100.0):
        pacer.wait(event_time)
    assert clock.sleeps == [1.0, 2.0, 7.0]


def test_event_time_pacing_catches_up_after_a_slow_send() -> None:
    clock = FakeClock()
    pacer = EventTimePacer(speed=1, clock=clock)
    pacer.wait(0.0)
    clock.time += 3.0  # sending took 3 s
    pacer.wait(2.0)  # already late: no sleep
    pacer.wait(5.0)
    assert clock.sleeps == [2.0]


def test_event_time_pacing_does_not_go_back_for_a_late_event() -> None:
    clock = FakeClock()
    pacer = EventTimePacer(speed=2, clock=clock)
    for event_time in (10.0, 4.0, 14.0):
        pacer.wait(event_time)
    assert clock.sleeps == [2.0]


def test_rate_pacing_spaces_events_evenly_whatever_their_times() -> None:
    clock = FakeClock()
    pacer = RatePacer(events_per_second=4, clock=clock, min_sleep=0)
    for event_time in (0.0, 1000.0, 1000.0, 5.0):
        pacer.wait(event_time)
    assert clock.sleeps == [0.25, 0.25, 0.25]


def test_rate_pacing_skips_tiny_sleeps_and_makes_up_for_them() -> None:
    clock = FakeClock()
    pacer = RatePacer(events_per_second=8, clock=clock, min_sleep=0.3)
    for _ in range(7):
        pacer.wait(0.0)
    assert clock.sleeps == [0.375, 0.375]


def test_unpaced_never_sleeps() -> None:
    began = time.monotonic()
    for event_time in (0.0, 1e9, 0.0):
        Unpaced().wait(event_time)
    assert time.monotonic() - began < 1.0


@pytest.mark.parametrize("make", [lambda: RatePacer(0), lambda: EventTimePacer(-1)])
def test_a_pace_must_be_positive(make) -> None:
    with pytest.raises(ValueError, match="above 0"):
        make()
