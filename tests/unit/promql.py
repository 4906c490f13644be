"""A PromQL parser for the tests: checks an expression's syntax and lists the series it selects.

It covers the language the dashboard and the alert rules use (selectors with matchers, ranges,
subqueries, offsets, functions, aggregations with by/without, binary operators with bool and
vector matching, Grafana's ``$__rate_interval``-style variables in durations) and refuses anything
else with :class:`PromQLError`, so a typo in a query fails a test instead of showing an empty panel.

>>> [s.metric for s in parse('sum by (le) (rate(fraud_x_bucket{a="b"}[5m])) / on() group_left up')]
['fraud_x_bucket', 'up']
>>> parse("rate(fraud_x_total[5m]")
Traceback (most recent call last):
...
promql.PromQLError: expected ')' at end of input
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = frozenset(
    re.findall(
        r"\w+",
        "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio",
    )
)
FUNCTIONS = frozenset(
    re.findall(
        r"\w+",
        """abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min count_over_time
    day_of_month day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum
    hour idelta increase irate label_join label_replace last_over_time ln log10 log2 max_over_time
    min_over_time minute month predict_linear present_over_time quantile_over_time rate resets round
    scalar sgn sort sort_desc sort_by_label sort_by_label_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time time timestamp vector year""",
    )
)
# Lowest precedence first; ``^`` is right-associative, the rest left-associative.
BINARY_LEVELS = (
    ("or",),
    ("and", "unless"),
    ("==", "!=", "<=", ">=", "<", ">"),
    ("+", "-"),
    ("*", "/", "%", "atan2"),
    ("^",),
)
COMPARISONS = frozenset(BINARY_LEVELS[2])
SET_OPERATORS = frozenset(BINARY_LEVELS[0] + BINARY_LEVELS[1])
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<duration>(?:\d+(?:ms|[smhdwy]))+|\$\{?__\w+\}?)
    |(?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[Ii]nf\b|NaN\b)
    |(?P<ident>[a-zA-Z_:][\w:]*)
    |(?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],:@])
    )""",
    re.VERBOSE,
)


class PromQLError(ValueError):
    """The expression is not PromQL this parser knows."""


@dataclass(frozen=True)
class Selector:
    """One series selector: the metric name (or None for ``{...}`` alone) and its label matchers."""

    metric: str | None
    matchers: tuple[tuple[str, str, str], ...] = field(default=())  # (label, operator, value)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise PromQLError(f"unexpected character {text[position:].strip()[:1]!r} at {position}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse(text: str) -> list[Selector]:
    """The selectors of ``text`` in order, or :class:`PromQLError`."""
    parser = _Parser(tokenize(text))
    parser.expression()
    if parser.peek() is not None:
        raise PromQLError(f"unexpected {parser.peek()!r} after the expression")
    return parser.selectors


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.at, self.selectors = tokens, 0, []

    def peek(self, ahead: int = 0) -> str | None:
        index = self.at + ahead
        return self.tokens[index][1] if index < len(self.tokens) else None

    def kind(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            where = f"{token!r}" if token is not None else "end of input"
            raise PromQLError(f"expected {expected or 'more'!r} at {where}")
        self.at += 1
        return token

    def expression(self, level: int = 0) -> None:
        if level == len(BINARY_LEVELS):
            self.unary()
            return
        self.expression(level + 1)
        while self.peek() in BINARY_LEVELS[level] and self.kind() != "string":
            operator = self.take()
            if operator in COMPARISONS and self.peek() == "bool":
                self.take()
            self.vector_matching(operator)
            # ``^`` binds to the right: its right side is parsed at its own level again.
            self.expression(level if operator == "^" else level + 1)

    def vector_matching(self, operator: str) -> None:
        if self.peek() in ("on", "ignoring"):
            self.take()
            self.label_list()
            if self.peek() in ("group_left", "group_right"):
                if operator in SET_OPERATORS:
                    raise PromQLError(f"{self.peek()} with the set operator {operator!r}")
                self.take()
                if self.peek() == "(":
                    self.label_list()

    def unary(self) -> None:
        while self.peek() in ("-", "+"):
            self.take()
        self.primary()
        self.suffixes()

    def primary(self) -> None:
        kind, token = self.kind(), self.peek()
        if kind in ("number", "string"):
            self.take()
        elif token == "(":
            self.take()
            self.expression()
            self.take(")")
        elif token == "{":
            self.selector(None)
        elif kind == "ident" and token in AGGREGATIONS and self.peek(1) in ("(", "by", "without"):
            self.aggregation()
        elif kind == "ident" and self.peek(1) == "(":
            if token not in FUNCTIONS:
                raise PromQLError(f"unknown function {token!r}")
            self.take()
            self.arguments()
        elif kind == "ident":
            self.selector(self.take())
        else:
            raise PromQLError(f"unexpected {token!r}" if token else "unexpected end of input")

    def aggregation(self) -> None:
        self.take()
        grouped = self.grouping()
        self.arguments()
        if not grouped:
            self.grouping()

    def grouping(self) -> bool:
        if self.peek() not in ("by", "without"):
            return False
        self.take()
        self.label_list()
        return True

    def arguments(self) -> None:
        self.take("(")
        if self.peek() != ")":
            self.expression()
            while self.peek() == ",":
                self.take()
                self.expression()
        self.take(")")

    def label_list(self) -> None:
        self.take("(")
        while self.peek() != ")":
            if self.kind() != "ident":
                raise PromQLError(f"expected a label name at {self.peek()!r}")
            self.take()
            if self.peek() != ")":
                self.take(",")
        self.take(")")

    def selector(self, metric: str | None) -> None:
        matchers = []
        if self.peek() == "{":
            self.take()
            while self.peek() != "}":
                if self.kind() not in ("ident", "string"):
                    raise PromQLError(f"expected a label name at {self.peek()!r}")
                label = self.take()
                operator = self.take()
                if operator not in ("=", "!=", "=~", "!~") or self.kind() != "string":
                    raise PromQLError(f"expected a matcher for {label!r}")
                matchers.append((label, operator, self.take()[1:-1]))
                if self.peek() != "}":
                    self.take(",")
            self.take("}")
        if metric is None and not matchers:
            raise PromQLError("a selector needs a metric name or a matcher")
        self.selectors.append(Selector(metric, tuple(matchers)))

    def suffixes(self) -> None:
        if self.peek() == "[":
            self.take()
            self.duration()
            if self.peek() == ":":  # a subquery
                self.take()
                if self.peek() != "]":
                    self.duration()
            self.take("]")
        while self.peek() in ("offset", "@"):
            if self.take() == "offset":
                if self.peek() == "-":
                    self.take()
                self.duration()
            elif self.peek() in ("start", "end"):
                self.take()
                self.take("(")
                self.take(")")
            else:
                self.take()

    def duration(self) -> None:
        if self.kind() != "duration":
            raise PromQLError(f"expected a duration at {self.peek()!r}")
        self.take()
