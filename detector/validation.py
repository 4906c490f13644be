"""The vocabulary of typed configuration: durations as people write them, ranges, and readable errors.

The engine config and the service settings are validated by pydantic at construction, so a bad
value stops the start rather than the first transaction. Durations are "45s", "30m", "1h", "7d",
"2w" or a number of seconds, the same syntax as the simulator's config. :func:`problems` turns a
pydantic error into one line per problem, each naming the setting.

>>> parse_duration("7d"), parse_duration("1.5h"), parse_duration(30)
(604800.0, 5400.0, 30.0)
>>> from pydantic import TypeAdapter, ValidationError
>>> try:
...     TypeAdapter(PositiveDuration).validate_python("60x")
... except ValidationError as error:
...     print(*problems(error))
not a duration: '60x' (expected e.g. 45s, 30m, 1h, 7d, 2w)
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*$")


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds or a string with a unit (s, m, h, d, w)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (expected e.g. 45s, 30m, 1h, 7d, 2w)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[Duration, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
NonNegativeCount = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]

# The engine's config classes: a misspelt key is an error, not a silently ignored setting.
CONFIG_RULES = ConfigDict(extra="forbid")


def problems(error: ValidationError) -> list[str]:
    """One ``where: what`` line per problem, in the words of the config rather than of pydantic."""
    return [_line(detail) for detail in error.errors()]


def report(headline: str, error: ValidationError) -> str:
    """``headline:`` then each problem on an indented line of its own."""
    return f"{headline}:\n  " + "\n  ".join(problems(error))


def _line(detail: Any) -> str:
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in detail["loc"])
    what = _explained(detail["type"], detail.get("ctx") or {}, detail.get("input"), detail["msg"])
    return f"{where.lstrip('.')}: {what}" if where else what


def _explained(kind: str, ctx: dict[str, Any], given: Any, message: str) -> str:
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("above", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("below", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx[key]}, got {given}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return "unknown setting"
    if kind == "missing":
        return "required"
    if kind.startswith("int_"):
        return f"expected an integer, got {given!r}"
    if kind.startswith("float_"):
        return f"expected a number, got {given!r}"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} value(s), got {given!r}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, got {given!r}"
    return f"{message[:1].lower()}{message[1:]}, got {given!r}"
