"""The engine configurations a backtest runs side by side, built from the command line.

Each ``--config`` file and each ``--model`` name is one configuration; ``--baseline`` adds, for
each, the same with drift handling off; ``--rule`` adds rules to every configuration's policy, so
their effect shows against the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from detector.engine import MODEL_KINDS, ModelKind
from detector.engine.config import EngineConfig
from detector.engine.model import ModelConfig
from detector.engine.policy import Rule

BASELINE_SUFFIX = "-drift-off"


class BacktestError(ValueError):
    """A backtest that cannot run as asked: a bad option, config or file, said in one line."""


@dataclass(frozen=True)
class Variant:
    """One configuration under test, named for its output directory and its row in the table."""

    name: str
    config: EngineConfig


def build_variants(
    config_files: Sequence[Path], models: Sequence[str], baseline: bool, rules: Sequence[Rule] = ()
) -> list[Variant]:
    """The configurations to run: files and model names (the default engine if neither), each with
    the ``rules`` added and, with ``baseline``, a copy with drift handling off."""
    extra_rules = tuple(rules)
    named = [(path.stem, load_config(path)) for path in config_files]
    named += [(model, EngineConfig(model=ModelConfig(kind=_known_model(model)))) for model in models]
    if not named:
        named = [(EngineConfig().model.settled_kind, EngineConfig())]
    variants: list[Variant] = []
    taken: set[str] = set()
    for name, own in named:
        config = with_rules(own, extra_rules)
        pairs = [(name, config)]
        if baseline:
            pairs.append(
                (name + BASELINE_SUFFIX, replace(config, drift=replace(config.drift, enabled=False)))
            )
        for wanted, variant_config in pairs:
            unique = _unique(wanted, taken)
            taken.add(unique)
            variants.append(Variant(unique, variant_config))
    return variants


def load_config(path: Path) -> EngineConfig:
    """An engine JSON file, as ``FRAUD_ENGINE_CONFIG`` reads it."""
    try:
        return EngineConfig.from_dict(orjson.loads(path.read_bytes()))
    except OSError as error:
        raise BacktestError(f"--config {path}: {error.strerror or error}") from None
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as error:
        headline, *problems = str(error).splitlines()  # one line on stderr, however many problems
        details = "; ".join(line.strip() for line in problems)
        raise BacktestError(f"--config {path}: {headline} {details}".rstrip()) from None


def parse_rule(text: str) -> Rule:
    """A ``--rule`` in the policy's rule format: a JSON object with name, field, op, value, action."""
    try:
        spec = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BacktestError(f"--rule {text!r}: not JSON: {error}") from None
    if not isinstance(spec, dict):
        raise BacktestError(f"--rule {text!r}: expected a JSON object")
    try:
        return Rule.from_dict(spec)
    except ValueError as error:
        raise BacktestError(f"--rule: {error}") from None


def with_rules(config: EngineConfig, rules: tuple[Rule, ...]) -> EngineConfig:
    """``config`` with ``rules`` after its own; a name already in use would make two rules one."""
    if not rules:
        return config
    names = [rule.name for rule in (*config.policy.rules, *rules)]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise BacktestError(f"--rule: more than one rule named {', '.join(clashes)}")
    return replace(config, policy=replace(config.policy, rules=config.policy.rules + rules))


def _known_model(kind: str) -> ModelKind:
    if kind not in MODEL_KINDS:
        raise BacktestError(f"--model {kind!r}: unknown model kind; choose one of {', '.join(MODEL_KINDS)}")
    return kind


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    return candidate
