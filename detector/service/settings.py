"""Service settings: every one from an environment variable, validated at start, documented once.

Each field names its variable and says what it is for; :func:`settings_table` renders them for the
README and :func:`settings_help` for ``fraud-detector run --help``, and a test keeps the README in
step. Types and ranges are checked by pydantic; all problems are reported together, one line each,
so a bad deployment is fixed in one round rather than one variable at a time.

>>> settings = ServiceSettings.from_env({"FRAUD_BATCH_SIZE": "200", "FRAUD_MODEL": "hoeffding_adaptive_tree",
...                                      "FRAUD_LOG_LEVEL": "INFO", "FRAUD_CHECKPOINT_INTERVAL_S": "1m"})
>>> settings.batch_size, settings.model, settings.log_level, settings.checkpoint_interval_s
(200, 'hoeffding_adaptive_tree', 'info', 60.0)
>>> ServiceSettings.from_env({"FRAUD_BATCH_SIZE": "lots", "FRAUD_METRICS_PORT": "99999"})
Traceback (most recent call last):
...
detector.service.settings.SettingsError: invalid settings:
  FRAUD_BATCH_SIZE: expected an integer, got 'lots'
  FRAUD_METRICS_PORT: must be at most 65535, got 99999
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detector.engine import MODEL_KINDS, ModelKind
from detector.validation import Duration, report


class ConfigurationError(RuntimeError):
    """The deployment around the service is unusable as it is (e.g. its topics); the message says why."""


class SettingsError(ValueError):
    """One message listing every invalid setting."""


def _setting(env: str, default: Any, help: str, *, secret: bool = False, **constraints: Any) -> Any:
    return Field(
        default, validation_alias=env, description=help, json_schema_extra={"secret": secret}, **constraints
    )


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _topic_name(name: str) -> str:
    """Kafka's rule for topic names; a bad one would otherwise surface only when the topic is made."""
    if not _TOPIC_NAME.fullmatch(name):
        raise ValueError(f"a topic name is 1 to 249 letters, digits, '.', '_' or '-', got {name!r}")
    return name


Topic = Annotated[str, AfterValidator(_topic_name)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lowercase)]


class ServiceSettings(BaseSettings):
    """How the detector service connects, what it reads and writes, and how often it commits.

    Built from field names in code, or from variable names by :meth:`from_env`; frozen, so a
    changed copy comes from :meth:`replaced`, validated like the original.
    """

    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    bootstrap_servers: str = _setting("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka bootstrap servers")
    transactions_topic: Topic = _setting("FRAUD_TRANSACTIONS_TOPIC", "transactions", "input: transactions")
    labels_topic: Topic = _setting("FRAUD_LABELS_TOPIC", "labels", "input: fraud labels, co-partitioned")
    audit_topic: Topic = _setting("FRAUD_AUDIT_TOPIC", "fraud.audit", "output: hash-chained audit records")
    decisions_topic: Topic = _setting("FRAUD_DECISIONS_TOPIC", "fraud.decisions", "output: compact decisions")
    dead_letter_topic: Topic = _setting(
        "FRAUD_DEAD_LETTER_TOPIC", "fraud.dead-letter", "output: rejected input"
    )
    checkpoint_topic: Topic = _setting(
        "FRAUD_CHECKPOINT_TOPIC", "fraud.checkpoints", "engine snapshots (compacted)"
    )
    shared_updates_topic: Topic = _setting(
        "FRAUD_SHARED_UPDATES_TOPIC",
        "fraud.shared-updates",
        "internal, shared learning: what each scorer partition scored and learned, for the learner",
    )
    shared_versions_topic: Topic = _setting(
        "FRAUD_SHARED_VERSIONS_TOPIC",
        "fraud.shared-versions",
        "internal, shared learning: one record per epoch the learner applied (terminals, model)",
    )
    shared_snapshots_topic: Topic = _setting(
        "FRAUD_SHARED_SNAPSHOTS_TOPIC",
        "fraud.shared-snapshots",
        "internal, shared learning: the learner's latest view (compacted), where scorers start from",
    )
    sharing: Literal["auto", "local", "learner"] = _setting(
        "FRAUD_SHARING",
        "auto",
        "auto, local or learner: one model for all partitions through `fraud-detector learn`"
        " (learner), or a model per process (local); auto: local for a 1-partition input",
    )
    sharing_idle_s: Duration = _setting(
        "FRAUD_SHARING_IDLE_S",
        10.0,
        "a partition caught up this long is marked idle, so the others' epochs are not held back",
        ge=0.001,
    )
    group_id: str = _setting("FRAUD_GROUP_ID", "fraud-detector", "consumer group shared by all instances")
    instance_id: str = _setting(
        "FRAUD_INSTANCE_ID",
        socket.gethostname(),
        "stable per instance: its transactional id and static group membership, so a restarted"
        " instance fences its zombie and gets its partitions back at once",
    )
    model: ModelKind = _setting("FRAUD_MODEL", "logistic_regression", f"one of {', '.join(MODEL_KINDS)}")
    engine_config: str = _setting(
        "FRAUD_ENGINE_CONFIG", "", "path to a JSON engine config (overrides FRAUD_MODEL)"
    )
    batch_size: int = _setting("FRAUD_BATCH_SIZE", 2000, "most input records per Kafka transaction", ge=1)
    batch_timeout_ms: int = _setting(
        "FRAUD_BATCH_TIMEOUT_MS", 20, "longest wait to fill a batch: bounds decision latency", ge=1
    )
    transaction_timeout_ms: int = _setting(
        "FRAUD_TRANSACTION_TIMEOUT_MS",
        15_000,
        "Kafka aborts a transaction left open this long (a vanished broker);"
        " at most the broker's transaction.max.timeout.ms",
        ge=1000,
    )
    checkpoint_interval_s: Duration = _setting(
        "FRAUD_CHECKPOINT_INTERVAL_S", 60.0, "time between engine snapshots (seconds, or e.g. 5m)", ge=0.001
    )
    checkpoint_max_changes: int = _setting(
        "FRAUD_CHECKPOINT_MAX_CHANGES",
        5_000,
        "a partition is checkpointed sooner once this many entries of its state changed:"
        " bounds a checkpoint's pause and the changes held in memory",
        ge=1,
    )
    state_store: Literal["disk", "memory"] = _setting(
        "FRAUD_STATE_STORE",
        "disk",
        "disk: cards and pending scores in RocksDB under FRAUD_STATE_DIR, a checkpoint writes what"
        " changed; memory: all state in memory, snapshotted whole",
    )
    state_dir: str = _setting(
        "FRAUD_STATE_DIR", "state", "local directory of the state stores, rebuilt from Kafka if lost"
    )
    topic_partitions: int = _setting(
        "FRAUD_TOPIC_PARTITIONS", 3, "partitions of topics the service creates", ge=1
    )
    replication_factor: int = _setting("FRAUD_REPLICATION_FACTOR", 1, "replication of created topics", ge=1)
    max_message_bytes: int = _setting(
        "FRAUD_MAX_MESSAGE_BYTES", 64 * 1024, "larger input is dead-lettered unparsed", ge=256
    )
    pseudonym_key: str = _setting(
        "FRAUD_PSEUDONYM_KEY", "", "if set, customer ids in the audit are keyed hashes", secret=True
    )
    audit_hmac_key: str = _setting(
        "FRAUD_AUDIT_HMAC_KEY", "", "if set, the audit chain uses HMAC-SHA256 (forgery-evident)", secret=True
    )
    metrics_port: int = _setting(
        "FRAUD_METRICS_PORT", 9400, "Prometheus metrics and health; 0 disables", ge=0, le=65535
    )
    log_level: LogLevel = _setting("FRAUD_LOG_LEVEL", "info", "debug, info, warning or error (any case)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller gives: :meth:`from_env` passes the environment it is handed (an env
        file merged under the process's), so code and tests never pick up the shell's variables."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServiceSettings:
        """The settings in ``environ``'s variables; an unset or empty variable keeps its default."""
        given: dict[str, Any] = {env: environ[env] for env in ENVIRONMENT_NAMES.values() if environ.get(env)}
        try:
            return cls(**given)
        except ValidationError as error:
            raise SettingsError(report("invalid settings", error)) from None

    def replaced(self, **changes: Any) -> ServiceSettings:
        """A copy with ``changes`` (by field name), validated like any settings."""
        try:
            return type(self)(**{**self.model_dump(), **changes})
        except ValidationError as error:
            raise SettingsError(report("invalid settings", error)) from None

    def shares_through_learner(self, input_partitions: int) -> bool:
        """Whether the partitions share one model through the learner process (FRAUD_SHARING).

        >>> ServiceSettings().shares_through_learner(1), ServiceSettings().shares_through_learner(3)
        (False, True)
        """
        if self.sharing == "auto":
            return input_partitions > 1
        return self.sharing == "learner"

    def redacted(self) -> dict[str, Any]:
        """The settings for a start-up log line, secrets replaced by whether they are set."""
        return {name: bool(value) if name in _SECRETS else value for name, value in self}


# Field name -> the variable that sets it.
ENVIRONMENT_NAMES: dict[str, str] = {
    name: str(spec.validation_alias) for name, spec in ServiceSettings.model_fields.items()
}
_SECRETS = {
    name
    for name, spec in ServiceSettings.model_fields.items()
    if isinstance(spec.json_schema_extra, dict) and spec.json_schema_extra.get("secret")
}


_HOST_NAME = "(host name)"  # the default of instance_id, which differs per machine


def _documented() -> Iterator[tuple[str, str, str]]:
    """(variable, default as shown, meaning) per setting."""
    for name, spec in ServiceSettings.model_fields.items():
        default = _HOST_NAME if name == "instance_id" else str(spec.default)
        yield ENVIRONMENT_NAMES[name], default, str(spec.description)


def settings_table() -> str:
    """The README's configuration table, generated from the fields."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for env, default, meaning in _documented():
        shown = default if default in ("", _HOST_NAME) else f"`{default}`"
        lines.append(f"| `{env}` | {shown} | {meaning} |")
    return "\n".join(lines)


def settings_help() -> str:
    """The settings as plain text for ``--help``: variable, default and meaning."""
    lines = ["settings (environment variables, or KEY=VALUE lines of --env-file):"]
    for env, default, meaning in _documented():
        lines.append(f"  {env}" + (f" (default {default})" if default else ""))
        lines.append(f"      {meaning}")
    return "\n".join(lines)
