"""Any librdkafka setting passes through the environment or a properties file; owned ones are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from detector.kafka_config import (
    SERVICE_OWNED,
    ClientSettingsError,
    client_config,
    client_settings,
    read_properties,
    refuse_owned,
    setting_name,
)
from detector.service.settings import ServiceSettings, SettingsError


def test_kafka_variables_map_to_librdkafka_names() -> None:
    assert setting_name("KAFKA_SASL_OAUTHBEARER_CONFIG") == "sasl.oauthbearer.config"
    assert setting_name("KAFKA_SSL_KEY_LOCATION") == "ssl.key.location"
    assert setting_name("KAFKA_SASL_USERNAME") == "sasl.username"
    assert setting_name("KAFKA_LINGER_MS") == "linger.ms"


def test_variables_that_are_no_client_setting_are_left_alone() -> None:
    for variable in ("KAFKA_HOME", "KAFKA_HEAP_OPTS", "KAFKA_NODE_ID", "KAFKA_CLIENT_PROPERTIES", "FRAUD_X"):
        assert setting_name(variable) is None, variable
    assert client_settings({"KAFKA_HEAP_OPTS": "-Xmx1g", "KAFKA_LOG_DIRS_X": ""}) == {}


def test_mtls_and_oauthbearer_need_only_the_environment() -> None:
    environ = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "KAFKA_SASL_OAUTHBEARER_METHOD": "oidc",
        "KAFKA_SASL_OAUTHBEARER_CONFIG": "scope=fraud",
        "KAFKA_SSL_KEY_LOCATION": "/etc/tls/client.key",
        "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/tls/client.pem",
    }
    assert client_config(environ=environ) == {
        "bootstrap.servers": "localhost:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.config": "scope=fraud",
        "ssl.key.location": "/etc/tls/client.key",
        "ssl.certificate.location": "/etc/tls/client.pem",
    }


def test_a_properties_file_is_read_as_java_clients_read_it(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# mTLS\n! also a comment\n\nsecurity.protocol = SSL\nssl.key.password=a=b\nlog_level=6\n"
    )
    assert read_properties(path) == {"security.protocol": "SSL", "ssl.key.password": "a=b", "log_level": "6"}


def test_a_bad_properties_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("security.protocol=SSL\nssl.key.location\n")
    with pytest.raises(ClientSettingsError, match=r"client.properties:2: expected key=value"):
        client_settings({"KAFKA_CLIENT_PROPERTIES": str(path)})
    with pytest.raises(ClientSettingsError, match=r"KAFKA_CLIENT_PROPERTIES: cannot read .*missing"):
        client_settings({"KAFKA_CLIENT_PROPERTIES": str(tmp_path / "missing")})


def test_precedence_file_then_environment_then_bootstrap_then_command_line(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=file:9092\nlinger.ms=1\nacks=1\nclient.id=file\n")
    environ = {"KAFKA_CLIENT_PROPERTIES": str(path), "KAFKA_LINGER_MS": "2", "KAFKA_ACKS": "all"}
    assert client_config(environ=environ) == {
        "bootstrap.servers": "file:9092",
        "linger.ms": "2",
        "acks": "all",
        "client.id": "file",
    }
    config = client_config("cli:9092", {"acks": "0"}, environ)
    assert config["bootstrap.servers"] == "cli:9092" and config["acks"] == "0" and config["linger.ms"] == "2"


def test_settings_the_service_owns_are_refused_in_one_line() -> None:
    given = client_settings({"KAFKA_ISOLATION_LEVEL": "read_uncommitted", "KAFKA_GROUP_ID": "other"})
    with pytest.raises(SettingsError) as error:
        refuse_owned(given)
    message = str(error.value)
    assert "\n" not in message
    assert "isolation.level" in message and "group.id (set FRAUD_GROUP_ID instead)" in message


def test_defaults_the_service_merely_prefers_may_be_overridden() -> None:
    refuse_owned(client_settings({"KAFKA_LINGER_MS": "5", "KAFKA_COMPRESSION_TYPE": "lz4"}))


def test_every_owned_setting_is_refused_and_transaction_timeout_is_a_service_setting() -> None:
    for name in SERVICE_OWNED:
        with pytest.raises(ClientSettingsError, match=name):
            refuse_owned({name: "x"})
    assert ServiceSettings.from_env({}).transaction_timeout_ms == 15_000
    assert (
        ServiceSettings.from_env({"FRAUD_TRANSACTION_TIMEOUT_MS": "60000"}).transaction_timeout_ms == 60_000
    )
    with pytest.raises(SettingsError, match="FRAUD_TRANSACTION_TIMEOUT_MS: must be at least 1000"):
        ServiceSettings.from_env({"FRAUD_TRANSACTION_TIMEOUT_MS": "10"})


def test_the_service_refuses_a_setting_it_owns_at_start_with_exit_2() -> None:
    environ = {**os.environ, "KAFKA_TRANSACTIONAL_ID": "mine", "FRAUD_METRICS_PORT": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "detector.cli", "run"],
        check=False,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "transactional.id" in run.stderr and "Traceback" not in run.stderr
