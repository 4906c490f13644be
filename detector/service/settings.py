"""Service settings: every one from an environment variable, validated at start, documented once.

Each field names its variable and says what it is for; :func:`settings_table` renders them for the
README, and a test keeps the two in step. All problems are reported together, so a bad deployment
is fixed in one round rather than one variable at a time.

>>> settings = ServiceSettings.from_env({"FRAUD_BATCH_SIZE": "200", "FRAUD_MODEL": "hoeffding_adaptive_tree"})
>>> settings.batch_size, settings.model, settings.transactions_topic
(200, 'hoeffding_adaptive_tree', 'transactions')
>>> ServiceSettings.from_env({"FRAUD_BATCH_SIZE": "lots", "FRAUD_CHECKPOINT_INTERVAL_S": "-1"})
Traceback (most recent call last):
...
detector.service.settings.SettingsError: invalid settings:
  FRAUD_BATCH_SIZE: expected an integer, got 'lots'
  FRAUD_CHECKPOINT_INTERVAL_S: must be at least 0.001, got -1.0
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detector.engine import MODEL_KINDS


class ConfigurationError(RuntimeError):
    """The deployment around the service is unusable as it is (e.g. its topics); the message says why."""


class SettingsError(ValueError):
    """One message listing every invalid setting."""


def _setting(env: str, default: Any, help: str, *, minimum: float | None = None, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "minimum": minimum, "secret": secret})


@dataclass(frozen=True)
class ServiceSettings:
    """How the detector service connects, what it reads and writes, and how often it commits."""

    bootstrap_servers: str = _setting("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka bootstrap servers")
    transactions_topic: str = _setting("FRAUD_TRANSACTIONS_TOPIC", "transactions", "input: transactions")
    labels_topic: str = _setting("FRAUD_LABELS_TOPIC", "labels", "input: fraud labels, co-partitioned")
    audit_topic: str = _setting("FRAUD_AUDIT_TOPIC", "fraud.audit", "output: hash-chained audit records")
    decisions_topic: str = _setting("FRAUD_DECISIONS_TOPIC", "fraud.decisions", "output: compact decisions")
    dead_letter_topic: str = _setting(
        "FRAUD_DEAD_LETTER_TOPIC", "fraud.dead-letter", "output: rejected input"
    )
    checkpoint_topic: str = _setting(
        "FRAUD_CHECKPOINT_TOPIC", "fraud.checkpoints", "engine snapshots (compacted)"
    )
    group_id: str = _setting("FRAUD_GROUP_ID", "fraud-detector", "consumer group shared by all instances")
    instance_id: str = _setting(
        "FRAUD_INSTANCE_ID",
        socket.gethostname(),
        "stable per instance: its transactional id, so a restarted instance fences its zombie",
    )
    model: str = _setting("FRAUD_MODEL", "logistic_regression", f"one of {', '.join(MODEL_KINDS)}")
    engine_config: str = _setting(
        "FRAUD_ENGINE_CONFIG", "", "path to a JSON engine config (overrides FRAUD_MODEL)"
    )
    batch_size: int = _setting(
        "FRAUD_BATCH_SIZE", 2000, "most input records per Kafka transaction", minimum=1
    )
    batch_timeout_ms: int = _setting(
        "FRAUD_BATCH_TIMEOUT_MS", 20, "longest wait to fill a batch: bounds decision latency", minimum=1
    )
    transaction_timeout_ms: int = _setting(
        "FRAUD_TRANSACTION_TIMEOUT_MS",
        15_000,
        "Kafka aborts a transaction left open this long (a vanished broker);"
        " at most the broker's transaction.max.timeout.ms",
        minimum=1000,
    )
    checkpoint_interval_s: float = _setting(
        "FRAUD_CHECKPOINT_INTERVAL_S", 60.0, "seconds between engine snapshots", minimum=0.001
    )
    topic_partitions: int = _setting(
        "FRAUD_TOPIC_PARTITIONS", 3, "partitions of topics the service creates", minimum=1
    )
    replication_factor: int = _setting(
        "FRAUD_REPLICATION_FACTOR", 1, "replication of created topics", minimum=1
    )
    max_message_bytes: int = _setting(
        "FRAUD_MAX_MESSAGE_BYTES", 64 * 1024, "larger input is dead-lettered unparsed", minimum=256
    )
    pseudonym_key: str = _setting(
        "FRAUD_PSEUDONYM_KEY", "", "if set, customer ids in the audit are keyed hashes", secret=True
    )
    audit_hmac_key: str = _setting(
        "FRAUD_AUDIT_HMAC_KEY", "", "if set, the audit chain uses HMAC-SHA256 (forgery-evident)", secret=True
    )
    metrics_port: int = _setting(
        "FRAUD_METRICS_PORT", 9400, "Prometheus metrics and health; 0 disables", minimum=0
    )
    log_level: str = _setting("FRAUD_LOG_LEVEL", "info", "debug, info, warning or error")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServiceSettings:
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in dataclasses.fields(cls):
            raw = environ.get(spec.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[spec.name] = _parse(raw, spec)
            except ValueError as error:
                problems.append(f"{spec.metadata['env']}: {error}")
        model = values.get("model", cls.model)
        if model not in MODEL_KINDS:
            problems.append(f"FRAUD_MODEL: must be one of {', '.join(MODEL_KINDS)}, got {model!r}")
        if values.get("log_level", cls.log_level) not in ("debug", "info", "warning", "error"):
            problems.append("FRAUD_LOG_LEVEL: must be debug, info, warning or error")
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        return cls(**values)

    def redacted(self) -> dict[str, Any]:
        """The settings for a start-up log line, secrets replaced by whether they are set."""
        return {
            spec.name: (
                bool(getattr(self, spec.name)) if spec.metadata["secret"] else getattr(self, spec.name)
            )
            for spec in dataclasses.fields(self)
        }


def settings_table() -> str:
    """The README's configuration table, generated from the fields."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for spec in dataclasses.fields(ServiceSettings):
        default = (
            "(host name)" if spec.name == "instance_id" else f"`{spec.default}`" if spec.default != "" else ""
        )
        lines.append(f"| `{spec.metadata['env']}` | {default} | {spec.metadata['help']} |")
    return "\n".join(lines)


def _parse(raw: str, spec: dataclasses.Field) -> Any:
    kind = spec.type if isinstance(spec.type, type) else {"int": int, "float": float, "str": str}[spec.type]
    if kind is int:
        try:
            value: Any = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    elif kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    else:
        value = raw
    minimum = spec.metadata["minimum"]
    if minimum is not None and value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    return value
