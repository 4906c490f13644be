"""The Grafana dashboard and the alert rules query only what the service exports, in valid PromQL.

Every expression is parsed with promql-parser (Prometheus's grammar, Grafana's interval variables
substituted first) and each series it selects must be one the service's registry serves: a panel or
an alert on a renamed metric would otherwise show no data and never fire. Grafana's provisioning
must point at the compose Prometheus and the mounted folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from detector.engine import outputs
from detector.engine.policy import OUTCOMES
from detector.service.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "fraud-detector.json"
# Series Prometheus makes itself for each scrape target, not the service.
SCRAPE_SERIES = frozenset({"up"})
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
EVENT_KINDS = {value for name, value in vars(outputs).items() if name.isupper() and isinstance(value, str)}
# Label values the queries may match, where the code names them.
KNOWN_VALUES = {"kind": EVENT_KINDS, "outcome": set(OUTCOMES), "input": {"transactions", "labels"}}
# Grafana replaces these with a duration before the query reaches Prometheus.
GRAFANA_DURATIONS = re.compile(
    r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}"
)
OPERATORS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}  # promql_parser.MatchOp names


@dataclass(frozen=True)
class Selector:
    """One series selector of a query: the metric and its (label, operator, value) matchers."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]


def parse(expression: str) -> list[Selector]:
    """The selectors of ``expression``, in order; ValueError if it is not valid PromQL."""
    selectors: list[Selector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple(
                (m.name, OPERATORS[str(m.op).removeprefix("MatchOp.")], m.value)
                for m in node.matchers.matchers
            )
            named = [value for label, operator, value in matchers if label == "__name__" and operator == "="]
            selectors.append(Selector(node.name or named[0], matchers))

    promql_parser.walk(promql_parser.parse(GRAFANA_DURATIONS.sub("5m", expression)), visit)
    return selectors


def queryable(registry: CollectorRegistry) -> set[str]:
    """The sample names the registry serves, as PromQL sees them."""
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return queryable(ServiceMetrics().registry) | SCRAPE_SERIES


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    targets = [target["expr"] for panel in panels for target in panel["targets"]]
    return targets + [annotation["expr"] for annotation in dashboard["annotations"]["list"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def check_selectors(expression: str, exported: set[str]) -> list[Selector]:
    selectors = parse(expression)
    assert selectors, f"queries no series: {expression}"
    for selector in selectors:
        assert selector.metric in exported, f"{selector.metric!r} is not exported ({expression})"
        for label, operator, value in selector.matchers:
            allowed = KNOWN_VALUES.get(label)
            if allowed is not None and operator in ("=", "=~"):
                named = set(value.split("|")) if operator == "=~" else {value}
                assert named <= allowed, f"{label}={value!r} matches nothing the code writes ({expression})"
    return selectors


def test_the_registry_names_are_read_as_prometheus_sees_them(exported: set[str]) -> None:
    assert {
        "fraud_decisions_total",
        "fraud_end_to_end_latency_seconds_bucket",
        "fraud_consumer_lag",
    } <= exported
    assert "fraud_decisions" not in exported and "fraud_end_to_end_latency_seconds" not in exported


def test_every_dashboard_query_parses_and_selects_exported_series(
    dashboard: dict[str, Any], exported: set[str]
) -> None:
    used = {s.metric for e in dashboard_expressions(dashboard) for s in check_selectors(e, exported)}
    # What the dashboard is for: throughput, outcomes, latency, lag, dead letters, drift and swaps,
    assert {
        "fraud_records_consumed_total",
        "fraud_decisions_total",
        "fraud_end_to_end_latency_seconds_bucket",
        "fraud_consumer_lag",
        "fraud_dead_letters_total",
        "fraud_engine_events_total",
        "fraud_model_generation",
        # and the process: its checkpoints, CPU, memory, files and build.
        "fraud_checkpoint_age_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "fraud_build_info",
    } <= used
    kinds = {
        kind
        for e in dashboard_expressions(dashboard)
        for s in parse(e)
        for label, _, value in s.matchers
        if label == "kind"
        for kind in value.split("|")
    }
    assert {outputs.DRIFT_DETECTED, outputs.MODEL_SWAPPED, outputs.MODEL_RESET} <= kinds


def test_every_alert_rule_parses_and_selects_exported_series(exported: set[str]) -> None:
    expressions = alert_expressions()
    assert expressions
    for expression in expressions:
        check_selectors(expression, exported)


@pytest.mark.parametrize(
    "broken",
    [
        "rate(fraud_decisions_total[5m]",
        "sum by (outcome (rate(fraud_decisions_total[5m]))",
        "rat(fraud_decisions_total[5m])",
        "fraud_decisions_total{outcome=block}",
        "rate(fraud_decisions_total[5 m])",
        "fraud_decisions_total or on() group_left fraud_consumer_lag",
        "sum(fraud_consumer_lag) fraud_consumer_lag",
    ],
)
def test_the_parser_refuses_broken_queries(broken: str) -> None:
    with pytest.raises(ValueError):
        parse(broken)


def test_grafana_variables_are_durations_to_the_parser() -> None:
    (selector,) = parse('rate(fraud_decisions_total{outcome="block"}[$__rate_interval])')
    assert selector == Selector("fraud_decisions_total", (("outcome", "=", "block"),))
    assert [s.metric for s in parse("increase(up[${__range}]) / on() group_left fraud_consumer_lag")] == [
        "up",
        "fraud_consumer_lag",
    ]


def test_a_renamed_metric_is_caught(exported: set[str]) -> None:
    with pytest.raises(AssertionError, match="not exported"):
        check_selectors("sum(rate(fraud_decision_total[5m]))", exported)
    with pytest.raises(AssertionError, match="matches nothing"):
        check_selectors('fraud_engine_events_total{kind=~"drift_detected|model_swap"}', exported)


def test_grafana_is_provisioned_with_the_compose_prometheus_and_the_dashboard_folder(
    dashboard: dict[str, Any],
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    grafana = compose["grafana"]
    mounts = {
        target: ROOT / source for source, target, *_ in (volume.split(":") for volume in grafana["volumes"])
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == GRAFANA / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus_port = compose["prometheus"]["ports"][0].split(":")[-1]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "fraud-detector.yml").read_text())[
        "providers"
    ]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounts[str(Path(home).parent)] / Path(home).name == DASHBOARD
    datasources = [panel["datasource"] for panel in dashboard["panels"] if panel["type"] != "row"]
    datasources += [target["datasource"] for p in dashboard["panels"] for target in p.get("targets", [])]
    assert {(d["type"], d["uid"]) for d in datasources} == {("prometheus", source["uid"])}
    assert re.fullmatch(r"[\w-]+", dashboard["uid"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
