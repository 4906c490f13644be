"""Kafka client settings from the command line and the environment, in one place.

Deployments pass security settings through the environment (so secrets stay out of argv and shell
history); a command line adds or overrides any librdkafka setting with ``key=value``. The detector's
consumers can use :func:`client_config` as well, so producers and consumers agree on how to connect.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"

# Environment variable -> librdkafka setting.
ENVIRONMENT_SETTINGS = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap.servers",
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
}


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``["acks=all", "linger.ms=5"]`` -> ``{"acks": "all", "linger.ms": "5"}``."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        settings[key.strip()] = value
    return settings


def client_config(
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """Settings for a confluent-kafka client.

    Precedence, lowest first: the environment (``ENVIRONMENT_SETTINGS``), ``bootstrap_servers``,
    then ``overrides``. Bootstrap servers default to ``localhost:9092``.
    """
    config = {"bootstrap.servers": DEFAULT_BOOTSTRAP_SERVERS}
    config.update({key: environ[name] for name, key in ENVIRONMENT_SETTINGS.items() if environ.get(name)})
    if bootstrap_servers:
        config["bootstrap.servers"] = bootstrap_servers
    config.update(overrides or {})
    return config
