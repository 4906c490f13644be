"""Durations and start times as people write them in configs and on the command line.

Durations are "90s", "15m", "12h", "7d", "2w" or a plain number of seconds (parsed by
:func:`detector.validation.parse_duration`, the engine config's syntax too), so a config reads
``"delay": "7d"`` rather than ``604800``.

>>> parse_moment("1d", origin=1_767_225_600.0) == parse_moment("2026-01-02T00:00:00Z", origin=0.0)
True
"""

from __future__ import annotations

from typing import Annotated

from detector.engine.records import parse_timestamp
from detector.validation import parse_duration

# Marks a config field given as a duration, so the config loader accepts "7d" for it.
DURATION = "duration"
Seconds = Annotated[float, DURATION]


def parse_moment(value: str, origin: float) -> float:
    """Epoch seconds of an RFC 3339 timestamp, or of a duration counted from ``origin``."""
    try:
        return origin + parse_duration(value)
    except ValueError:
        return parse_timestamp(value, "time")
