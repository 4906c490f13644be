"""Durations as people write them in configs and on the command line: "90s", "15m", "12h", "7d",
"2w" or a plain number of seconds, so a setting reads ``"delay": "7d"`` rather than ``604800``.

>>> parse_duration("7d"), parse_duration("1.5h"), parse_duration(30)
(604800.0, 5400.0, 30.0)
"""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*$")


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds or a string with a unit (s, m, h, d, w)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (expected e.g. 90s, 15m, 12h, 7d, 2w)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0, got {value!r}")
    return seconds
