"""docker-compose.yml, the Dockerfile and deploy/ agree with the code they deploy (no Docker needed)."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.audit.cli import register
from detector.cli import build_parser
from detector.kafka_config import ENVIRONMENT_SETTINGS
from detector.service.health import LIVENESS_PATH, METRICS_PATH
from detector.service.settings import ENVIRONMENT_NAMES, ServiceSettings
from producers import simulate_cli

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("detector", "learner", "simulator")  # the services that run this project's code, in its image
CODE_SERVICES = (*APP_SERVICES, "report")  # ... and in the image with the report extra
SETTING_NAMES = set(ENVIRONMENT_NAMES.values())
SERVING = ("detector", "learner")  # the services with /metrics and /healthz


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with ``${NAME:-default}`` resolved to its default, as with no .env."""
    return {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        for name, value in (service.get("environment") or {}).items()
    }


def detector_settings(services: dict[str, Any]) -> ServiceSettings:
    return ServiceSettings.from_env(env(services["detector"]))


def dockerfile_instructions() -> dict[str, list[str]]:
    """Each instruction's arguments, continuation lines joined, by keyword."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    values: dict[str, list[str]] = {}
    for keyword, argument in re.findall(
        r"^([A-Z]+)\s+((?:[^\n]*\\\n)*[^\n]*)", dockerfile, flags=re.MULTILINE
    ):
        values.setdefault(keyword, []).append(argument)
    return values


def test_every_service_is_there_and_starts_in_order(services: dict[str, Any]) -> None:
    assert set(services) == {
        "kafka",
        "topics",
        "detector",
        "learner",
        "simulator",
        "report",
        "prometheus",
        "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["detector"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["kafka"]


def test_app_variables_are_real_settings_with_valid_values(services: dict[str, Any]) -> None:
    known = SETTING_NAMES | set(ENVIRONMENT_SETTINGS)
    for name in CODE_SERVICES:
        used = {key for key in env(services[name]) if key.startswith(("FRAUD_", "KAFKA_"))}
        assert used <= known, f"{name}: unknown variables {sorted(used - known)}"
    settings = detector_settings(services)  # raises on any invalid value
    assert settings.bootstrap_servers == env(services["simulator"])["KAFKA_BOOTSTRAP_SERVERS"]
    assert settings.instance_id != ServiceSettings.from_env({}).instance_id, "instance ids must be stable"


def test_single_node_kafka_can_host_transactions_and_is_reachable_from_both_sides(
    services: dict[str, Any],
) -> None:
    broker = env(services["kafka"])
    for setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert broker[setting] == "1", setting
    assert "controller" in broker["KAFKA_PROCESS_ROLES"] and "broker" in broker["KAFKA_PROCESS_ROLES"]
    advertised = dict(item.split("://") for item in broker["KAFKA_ADVERTISED_LISTENERS"].split(","))
    in_network = detector_settings(services).bootstrap_servers
    assert in_network in advertised.values(), "the detector's bootstrap must be an advertised listener"
    host_ports = [mapping.split(":")[0] for mapping in services["kafka"]["ports"]]
    assert [f"localhost:{port}" for port in host_ports] == [
        address for address in advertised.values() if address.startswith("localhost:")
    ]


def test_topics_are_named_alike_by_the_setup_the_simulator_and_the_detector(
    services: dict[str, Any],
) -> None:
    settings = detector_settings(services)
    setup = env(services["topics"])
    assert (setup["TRANSACTIONS_TOPIC"], setup["LABELS_TOPIC"]) == (
        settings.transactions_topic,
        settings.labels_topic,
    )
    assert int(setup["PARTITIONS"]) == settings.topic_partitions
    script = services["topics"]["command"][0]
    assert "kafka-topics.sh" in script and "--create" in script
    for reference in ("$$TRANSACTIONS_TOPIC", "$$LABELS_TOPIC", '--partitions "$$PARTITIONS"'):
        assert reference in script
    command = services["simulator"]["command"]
    assert command[0] == "fraud-simulate"
    args = simulate_cli.build_parser().parse_args(command[1:])  # exits on an unknown option
    assert args.preset == "drift"
    assert (args.transactions_topic, args.labels_topic) == (
        settings.transactions_topic,
        settings.labels_topic,
    )


def test_prometheus_scrapes_the_port_and_path_the_detector_serves(services: dict[str, Any]) -> None:
    settings = detector_settings(services)
    assert f"{settings.metrics_port}:{settings.metrics_port}" in services["detector"]["ports"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == METRICS_PATH
    assert job["static_configs"][0]["targets"] == [f"{name}:{settings.metrics_port}" for name in SERVING]
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for rule_file in prometheus["rule_files"]:
        (source,) = [source for source, target in mounts.items() if target == rule_file]
        assert (ROOT / source).is_file()


def test_dockerfile_runs_the_service_unprivileged_with_a_liveness_check(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = dockerfile_instructions()
    assert values["FROM"] == ["python:3.11-slim"]
    assert values["USER"] and values["USER"][-1] not in ("root", "0")
    (healthcheck,) = values["HEALTHCHECK"]
    assert f"${{FRAUD_METRICS_PORT}}{LIVENESS_PATH}'" in healthcheck
    assert f"ENV FRAUD_METRICS_PORT={detector_settings(services).metrics_port}" in dockerfile
    (cmd,) = values["CMD"]
    command = shlex.split(cmd.strip("[]").replace(",", " "))
    assert command[0] == "fraud-detector"
    assert build_parser().parse_args(command[1:]).command == "run"


def test_compose_runs_the_kafka_version_of_the_dev_broker(services: dict[str, Any]) -> None:
    pom = ET.parse(ROOT / "devbroker" / "pom.xml").getroot()
    (version,) = [element.text for element in pom.iter() if element.tag.endswith("kafka.version")]
    images = {service["image"] for service in services.values() if "apache/kafka" in service.get("image", "")}
    assert images == {f"apache/kafka:{version}"}
    assert {name for name, s in services.items() if s.get("image") in images} == {"kafka", "topics"}


def test_only_the_detector_and_the_learner_inherit_the_images_health_check(services: dict[str, Any]) -> None:
    """The image's HEALTHCHECK asks /healthz, which only the detector and the learner serve."""
    assert dockerfile_instructions()["HEALTHCHECK"]
    for name in CODE_SERVICES:
        disabled = services[name].get("healthcheck", {}).get("disable", False)
        assert disabled is (name not in SERVING), name


def test_the_learner_runs_learn_with_the_detectors_settings(services: dict[str, Any]) -> None:
    learner = services["learner"]
    assert build_parser().parse_args(learner["command"][1:]).command == "learn"
    shared = {key: value for key, value in env(services["detector"]).items() if key != "FRAUD_INSTANCE_ID"}
    assert env(learner) == shared


def test_the_service_image_has_no_plotting_libraries_and_the_report_image_has(
    services: dict[str, Any],
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("matplotlib")]
    extras = project["optional-dependencies"]
    assert [d for d in extras["report"] if d.startswith("matplotlib")]
    assert "fraud-detector[report]" in extras["dev"], "make install, the demo and the tests draw figures"
    values = dockerfile_instructions()
    assert values["ARG"] == ["EXTRAS="], "the default image installs no extra"
    (install,) = [run for run in values["RUN"] if "pip install" in run]
    assert 'pip install ".${EXTRAS:+[$EXTRAS]}"' in install
    for name in APP_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "fraud-detector:local"
    report = services["report"]
    assert report["build"] == {"context": ".", "args": {"EXTRAS": "report"}}
    assert report["image"] != services["detector"]["image"], "one tag for two different images"


def test_reports_go_to_a_volume_the_unprivileged_user_can_write(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    report = services["report"]
    assert report["profiles"], "a one-shot job, run on demand, not by docker compose up"
    (mount,) = report["volumes"]
    volume, target = mount.split(":")
    assert volume in compose["volumes"]
    command = report["command"]
    assert command[:2] == ["fraud-detector", "audit"]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(command[1:])  # exits on an unknown option
    assert args.audit_command == "report" and args.out.is_relative_to(target)
    values = dockerfile_instructions()
    user = values["USER"][-1]
    (setup,) = [run for run in values["RUN"] if "useradd" in run]
    assert f"mkdir {target}" in setup and f"chown {user} {target}" in setup
