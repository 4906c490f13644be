"""Kafka client settings from the command line, the environment and a properties file, in one place.

Deployments pass connection and security settings through the environment (so secrets stay out of
argv and shell history), as the Kafka ecosystem does: ``KAFKA_SSL_KEY_LOCATION`` is librdkafka's
``ssl.key.location``, ``KAFKA_SASL_OAUTHBEARER_CONFIG`` its ``sasl.oauthbearer.config``, so mTLS or
OAUTHBEARER need no code. ``KAFKA_CLIENT_PROPERTIES`` names a ``key=value`` file as Java clients
use (for settings with ``_`` in their name, or many at once). A command line adds or overrides any
setting with ``key=value``. The service, the audit tools and the producers all build their clients
with :func:`client_config`, so they agree on how to connect.

>>> client_settings({"KAFKA_SSL_KEY_LOCATION": "/etc/tls/key.pem", "KAFKA_HOME": "/opt/kafka"})
{'ssl.key.location': '/etc/tls/key.pem'}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from detector.service.settings import SettingsError

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"
PREFIX = "KAFKA_"
PROPERTIES_FILE_VARIABLE = "KAFKA_CLIENT_PROPERTIES"

# The documented environment variables; any other KAFKA_* one that names a librdkafka setting works too.
ENVIRONMENT_SETTINGS = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap.servers",
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
}

# First words of librdkafka's settings (its CONFIGURATION.md). Shells and images hold other KAFKA_*
# variables (KAFKA_HOME, KAFKA_HEAP_OPTS, a broker's KAFKA_NODE_ID): those are no client setting,
# and a client given one would refuse to start. A misspelt setting in a known family still reaches
# librdkafka, which names it ("No such configuration property").
_SETTING_FAMILIES = frozenset(
    (  # noqa: SIM905 - a word list reads better than one quoted word a line
        "acks allow api auto batch bootstrap broker builtin check client compression connections"
        " consume coordinator debug delivery enable fetch group heartbeat https internal isolation"
        " linger max message metadata offset partition partitioner plugin produce queue queued queuing"
        " receive reconnect request resolve retries retry sasl security session socket ssl statistics"
        " sticky topic transaction transactional"
    ).split()
)

# Settings the detector service sets itself: exactly-once and its group depend on them. Each says
# why, or which FRAUD_* setting to use instead.
SERVICE_OWNED = {
    "transactional.id": "set from FRAUD_GROUP_ID and FRAUD_INSTANCE_ID",
    "group.id": "set FRAUD_GROUP_ID instead",
    "group.instance.id": "set from FRAUD_INSTANCE_ID",
    "transaction.timeout.ms": "set FRAUD_TRANSACTION_TIMEOUT_MS instead",
    "enable.idempotence": "transactions need it",
    "isolation.level": "only committed input may be decided",
    "enable.auto.commit": "offsets are committed in each transaction",
    "enable.auto.offset.store": "offsets are committed in each transaction",
    "auto.offset.reset": "a new group must decide its input from the start",
    "partition.assignment.strategy": "labels must be assigned with their transactions' partition",
    "enable.partition.eof": "recovery reads a partition up to its end",
}


class ClientSettingsError(SettingsError):
    """Kafka client settings that cannot be used; one line says which and why."""


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``["acks=all", "linger.ms=5"]`` -> ``{"acks": "all", "linger.ms": "5"}``."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        settings[key.strip()] = value
    return settings


def setting_name(variable: str) -> str | None:
    """``KAFKA_SSL_KEY_LOCATION`` -> ``ssl.key.location``; None for a variable that is no client setting."""
    if variable in ENVIRONMENT_SETTINGS:
        return ENVIRONMENT_SETTINGS[variable]
    if not variable.startswith(PREFIX) or variable == PROPERTIES_FILE_VARIABLE:
        return None
    name = variable[len(PREFIX) :].lower().replace("_", ".")
    return name if name.split(".")[0] in _SETTING_FAMILIES else None


def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines as Java clients read them: ``#`` and ``!`` comments, blank lines allowed."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ClientSettingsError(
            f"{PROPERTIES_FILE_VARIABLE}: cannot read {path}: {error.strerror}"
        ) from None
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise ClientSettingsError(f"{path}:{number}: expected key=value, got {stripped!r}")
        settings[key.strip()] = value.strip()
    return settings


def client_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The settings a deployment passes through: the properties file, then ``KAFKA_*`` variables."""
    path = environ.get(PROPERTIES_FILE_VARIABLE)
    settings = read_properties(Path(path)) if path else {}
    for variable, value in environ.items():
        name = setting_name(variable)
        if name is not None and value:
            settings[name] = value
    return settings


def refuse_owned(settings: Mapping[str, str], owned: Mapping[str, str] = SERVICE_OWNED) -> None:
    """Refuse, in one line, settings the service sets itself: they would be silently replaced."""
    given = [f"{name} ({why})" for name, why in owned.items() if name in settings]
    if given:
        raise ClientSettingsError(
            f"the service sets these Kafka settings itself: {'; '.join(given)}."
            f" Remove them from the KAFKA_* environment and {PROPERTIES_FILE_VARIABLE}"
        )


def client_config(
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """Settings for a confluent-kafka client.

    Precedence, lowest first: the ``KAFKA_CLIENT_PROPERTIES`` file, ``KAFKA_*`` variables,
    ``bootstrap_servers``, then ``overrides``. Bootstrap servers default to ``localhost:9092``.
    """
    config = {"bootstrap.servers": DEFAULT_BOOTSTRAP_SERVERS, **client_settings(environ)}
    if bootstrap_servers:
        config["bootstrap.servers"] = bootstrap_servers
    config.update(overrides or {})
    return config
