"""Scheduled drift: numeric simulation parameters that change at given event times.

A change moves one parameter to a new value at a moment, abruptly (``ramp`` 0) or along a linear
ramp of ``ramp`` seconds. Each change moves the parameter from whatever value it has when the change
starts, so changes chain; ramps that overlap add their deltas. Values are computed for whole arrays
of event times at once, so the simulator can apply drift per transaction at no Python-loop cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from producers.durations import Seconds, parse_moment


@dataclass(frozen=True)
class DriftChange:
    """Move ``param`` to ``to`` starting at ``at`` (RFC 3339, or a duration after the start, "30d")."""

    at: str
    param: str
    to: float
    ramp: Seconds = 0.0

    def __post_init__(self) -> None:
        parse_moment(self.at, 0.0)
        if not self.ramp >= 0:
            raise ValueError(f"ramp must be >= 0 seconds, got {self.ramp!r}")


@dataclass(frozen=True)
class _Step:
    start: float
    ramp: float
    delta: float

    def progress(self, times: np.ndarray) -> np.ndarray:
        if self.ramp == 0:
            return (times >= self.start).astype(float)
        return np.clip((times - self.start) / self.ramp, 0.0, 1.0)


class DriftSchedule:
    """The value of every drifting parameter at any event time."""

    def __init__(self, base: Mapping[str, float], changes: Sequence[DriftChange], origin: float) -> None:
        self._base = dict(base)
        self._steps: dict[str, list[_Step]] = {name: [] for name in base}
        timed = sorted(((parse_moment(c.at, origin), i, c) for i, c in enumerate(changes)))
        for start, _, change in timed:
            if change.param not in self._base:
                known = ", ".join(sorted(self._base))
                raise ValueError(f"drift of unknown parameter {change.param!r} (known: {known})")
            before = self.value(change.param, start)
            self._steps[change.param].append(_Step(start, change.ramp, change.to - before))

    def values(self, param: str, times: np.ndarray) -> np.ndarray:
        """``param`` at each of ``times`` (epoch seconds)."""
        result = np.full(np.shape(times), self._base[param], dtype=float)
        for step in self._steps[param]:
            result += step.delta * step.progress(times)
        return result

    def value(self, param: str, time: float) -> float:
        return float(self.values(param, np.array([time]))[0])

    def maximum(self, param: str, start: float, end: float) -> float:
        """The largest value of ``param`` over ``[start, end]``.

        Values are linear between breakpoints, so the largest is at an end or on either side of one.
        """
        inside = [
            moment
            for step in self._steps[param]
            for breakpoint in (step.start, step.start + step.ramp)
            for moment in (breakpoint, np.nextafter(breakpoint, -np.inf))
            if start < moment < end
        ]
        return float(self.values(param, np.array([start, end, *inside])).max())
