"""The simulation's settings: one dataclass tree, presets, and a JSON loader.

A JSON config overrides a preset field by field: ``{"seed": 7, "population": {"cards": 50000}}``
changes those two settings and keeps the rest. Durations may be written "7d", "12h" or in seconds.
Drift changes name the parameter they move by its path in the config, e.g. ``fraud_rate``,
``legit.amount_multiplier`` or ``scenarios.card_testing.weight``; ``relabel.<scenario>`` is the share
of a scenario's transactions that the business counts as legitimate (0 unless a change moves it).
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from detector.engine.records import parse_timestamp
from detector.validation import parse_duration
from producers.drift_schedule import DriftChange, DriftSchedule
from producers.durations import DURATION
from producers.labels import LabelConfig
from producers.population import LegitBehaviour, PopulationConfig
from producers.scenarios import ScenariosConfig

DEFAULT_START = "2026-01-01T00:00:00Z"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated stream: the same config gives the same stream.

    The simulation stops after ``days`` of event time or ``max_transactions`` transactions, whichever
    comes first (``None`` means no limit; at least one must be set).
    """

    seed: int = 0
    start: str = DEFAULT_START
    days: float | None = 30.0
    max_transactions: int | None = None
    fraud_rate: float = 0.004  # expected share of transactions that are fraudulent
    currency: str | None = "EUR"
    population: PopulationConfig = field(default_factory=PopulationConfig)
    legit: LegitBehaviour = field(default_factory=LegitBehaviour)
    scenarios: ScenariosConfig = field(default_factory=ScenariosConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    drift: tuple[DriftChange, ...] = ()

    def __post_init__(self) -> None:
        if self.days is None and self.max_transactions is None:
            raise ValueError("set days, max_transactions or both, or the simulation never ends")
        if (self.days is not None and self.days <= 0) or (
            self.max_transactions is not None and self.max_transactions < 0
        ):
            raise ValueError("days must be above 0 and max_transactions at least 0")
        if not 0 <= self.fraud_rate < 1:
            raise ValueError("fraud_rate must be at least 0 and below 1")
        self.drift_schedule()  # reject drift of unknown parameters now, not when simulating

    @property
    def start_time(self) -> float:
        return parse_timestamp(self.start, "start")

    def drift_schedule(self) -> DriftSchedule:
        base = {"fraud_rate": self.fraud_rate}
        base.update({f"legit.{f.name}": getattr(self.legit, f.name) for f in fields(self.legit)})
        base.update(
            {
                f"scenarios.{f.name}.weight": getattr(self.scenarios, f.name).weight
                for f in fields(self.scenarios)
            }
        )
        base.update({f"relabel.{f.name}": 0.0 for f in fields(self.scenarios)})
        return DriftSchedule(base, self.drift, self.start_time)


def default() -> SimulationConfig:
    """30 days of 10,000 cards and 1,000 terminals (about 22,000 transactions a day), 0.4% fraud
    mixed from all four scenarios, no drift."""
    return SimulationConfig()


def stationary() -> SimulationConfig:
    """The default stream over 60 days, the control for the drift presets: nothing changes."""
    return replace(default(), days=60.0)


def drift() -> SimulationConfig:
    """60 days where the fraud pattern changes abruptly on day 30: card testing stops and account
    takeover, absent until then, starts."""
    return SimulationConfig(
        days=60.0,
        scenarios=ScenariosConfig(
            card_testing=replace(ScenariosConfig().card_testing, weight=0.4),
            compromised_terminal=replace(ScenariosConfig().compromised_terminal, weight=0.3),
            account_takeover=replace(ScenariosConfig().account_takeover, weight=0.0),
            high_amount=replace(ScenariosConfig().high_amount, weight=0.3),
        ),
        drift=(
            DriftChange(at="30d", param="scenarios.card_testing.weight", to=0.0),
            DriftChange(at="30d", param="scenarios.account_takeover.weight", to=0.4),
        ),
    )


RAMP = 20 * 86400.0  # the gradual presets' changes run from day 20 to day 40


def inflation() -> SimulationConfig:
    """60 days where, from day 20 to day 40, legitimate amounts inflate by 30% and cards use new
    terminals far more often (2% to 15% of payments), while fraud stays as it was: a change of the
    data that a model of card-relative features should ride out, not a concept drift."""
    return SimulationConfig(
        days=60.0,
        drift=(
            DriftChange(at="20d", param="legit.amount_multiplier", to=1.3, ramp=RAMP),
            DriftChange(at="20d", param="legit.new_terminal_share", to=0.15, ramp=RAMP),
        ),
    )


def gradual() -> SimulationConfig:
    """The inflation preset's 60 days, where from day 20 to day 40 fraud also shifts from high
    amounts to account takeover."""
    base = inflation()
    return replace(
        base,
        drift=(
            *base.drift,
            DriftChange(at="20d", param="scenarios.high_amount.weight", to=0.05, ramp=RAMP),
            DriftChange(at="20d", param="scenarios.account_takeover.weight", to=0.45, ramp=RAMP),
        ),
    )


def relabel() -> SimulationConfig:
    """60 days where, on day 30, the business re-labels two segments: card testing (small probes,
    then cash-outs), counted as legitimate until then, becomes fraud, and purchases above a card's
    habit at its usual terminals (high amount), fraud until then, become legitimate. The transactions do not
    change; what counts as fraud does."""
    return SimulationConfig(
        days=60.0,
        drift=(
            DriftChange(at="0d", param="relabel.card_testing", to=1.0),
            DriftChange(at="30d", param="relabel.card_testing", to=0.0),
            DriftChange(at="30d", param="relabel.high_amount", to=1.0),
        ),
    )


PRESETS: dict[str, Callable[[], SimulationConfig]] = {
    "default": default,
    "drift": drift,
    "gradual": gradual,
    "stationary": stationary,
    "inflation": inflation,
    "relabel": relabel,
}


def preset(name: str) -> SimulationConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def load_config(path: str | Path, base: SimulationConfig | None = None) -> SimulationConfig:
    """``base`` (the default preset if none) overridden by the JSON object in ``path``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    return config_from_dict(data, base or default())


def config_from_dict(data: Any, base: SimulationConfig | None = None) -> SimulationConfig:
    """``base`` overridden by ``data``, the shape of :func:`config_to_dict`'s output."""
    return _override(SimulationConfig, data, base or default(), "config")


def config_to_dict(config: SimulationConfig) -> dict[str, Any]:
    """A JSON-ready dict that :func:`config_from_dict` reads back into ``config``."""
    return asdict(config)


def _override(cls: type, data: Any, base: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls, include_extras=True)
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    values = {
        name: _convert(hints[name], value, getattr(base, name, None), f"{path}.{name}")
        for name, value in data.items()
    }
    try:
        return replace(base, **values) if base is not None else cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None


def _convert(hint: Any, value: Any, base: Any, path: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        if DURATION in hint.__metadata__:
            try:
                return parse_duration(value)
            except ValueError as error:
                raise ConfigError(f"{path}: {error}") from None
        return _convert(args[0], value, base, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (arg for arg in args if arg is not type(None))
        return _convert(inner, value, base, path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        kinds = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            raise ConfigError(f"{path}: expected {len(kinds)} values, got {len(value)}")
        return tuple(
            _convert(kind, item, None, f"{path}[{i}]")
            for i, (kind, item) in enumerate(zip(kinds, value, strict=True))
        )
    if isinstance(hint, type) and is_dataclass(hint):
        return _override(hint, value, base, path)
    return _scalar(hint, value, path)


def _scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
