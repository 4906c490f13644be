"""Decision policy: score thresholds plus declarative rules, each outcome with its reason codes.

The outcome is the most severe of the score's outcome and the actions of the rules that fired.
Reason codes are stable strings that an analyst or a downstream system can filter on:
``rule:<name>`` for a rule, ``score:review`` / ``score:block`` for a threshold, and
``feature:<name>`` for the features that pushed the score up most (added by the engine).

>>> policy = DecisionPolicy(
...     review_threshold=0.5, block_threshold=0.9,
...     rules=(Rule.from_dict({"name": "big_amount", "field": "amount", "op": ">", "value": 5000,
...                            "action": "review"}),))
>>> policy.decide({"amount": 7000.0}, score=0.1)
('review', ['rule:big_amount'])
>>> policy.decide({"amount": 70.0}, score=0.95)
('block', ['score:block'])
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass as validated_dataclass

from detector.validation import CONFIG_RULES, Probability, problems

APPROVE, REVIEW, BLOCK = "approve", "review", "block"
OUTCOMES = (APPROVE, REVIEW, BLOCK)
_SEVERITY = {outcome: rank for rank, outcome in enumerate(OUTCOMES)}
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, allowed: value in allowed,
    "not_in": lambda value, allowed: value not in allowed,
}
_MEMBERSHIP = ("in", "not_in")


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class Rule:
    """``field op value -> action``; ``field`` is a transaction field or a feature name.

    Checked when built, with a clear message for each mistake; the list of ``in`` and ``not_in``
    becomes a frozenset, so a rule stays hashable and a lookup is O(1).
    """

    name: str
    field: str
    op: str
    value: Any
    action: str

    @field_validator("op")
    @classmethod
    def _known_operator(cls, op: str, info: ValidationInfo) -> str:
        if op not in _OPERATORS:
            raise ValueError(f"rule {info.data.get('name')!r}: op must be one of {', '.join(_OPERATORS)}")
        return op

    @field_validator("value")
    @classmethod
    def _membership_takes_a_list(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("op") not in _MEMBERSHIP:
            return value
        if not isinstance(value, list | tuple | set | frozenset):
            raise ValueError(f"rule {info.data.get('name')!r}: 'in' and 'not_in' take a list")
        return frozenset(value)

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str, info: ValidationInfo) -> str:
        if action not in (REVIEW, BLOCK):
            raise ValueError(f"rule {info.data.get('name')!r}: action must be 'review' or 'block'")
        return action

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Rule:
        """Build a rule from config; a missing key is named before anything else is checked."""
        missing = {"name", "field", "op", "value", "action"} - set(spec)
        if missing:
            raise ValueError(f"rule {spec.get('name', spec)!r} lacks {', '.join(sorted(missing))}")
        try:
            return cls(**spec)
        except ValidationError as error:  # one line, as a command-line option's mistake is reported
            raise ValueError(f"rule {spec['name']!r}: {'; '.join(problems(error))}") from None

    def fires(self, facts: Mapping[str, Any]) -> bool:
        """Whether the rule holds; a missing field or a type mismatch never fires."""
        if self.field not in facts:
            return False
        try:
            return bool(_OPERATORS[self.op](facts[self.field], self.value))
        except TypeError:
            return False


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class DecisionPolicy:
    """Thresholds on the fraud probability and the rules that can override them (checked when built)."""

    review_threshold: Probability = 0.5
    block_threshold: Probability = 0.9
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        if self.review_threshold > self.block_threshold:
            raise ValueError(
                "thresholds must satisfy review_threshold <= block_threshold,"
                f" got {self.review_threshold} > {self.block_threshold}"
            )

    def decide(self, facts: Mapping[str, Any], score: float | None) -> tuple[str, list[str]]:
        """Outcome and reason codes; ``score=None`` means the model is not trusted yet (rules only)."""
        outcome = APPROVE
        reasons: list[str] = []
        for rule in self.rules:
            if rule.fires(facts):
                reasons.append(f"rule:{rule.name}")
                outcome = _worse(outcome, rule.action)
        if score is not None:
            if score >= self.block_threshold:
                reasons.append("score:block")
                outcome = BLOCK
            elif score >= self.review_threshold:
                reasons.append("score:review")
                outcome = _worse(outcome, REVIEW)
        return outcome, reasons


def _worse(a: str, b: str) -> str:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b
