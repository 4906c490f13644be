"""Settings come from the environment, are validated together, and are documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.cli import main, read_env_file
from detector.service.settings import ENVIRONMENT_NAMES, ServiceSettings, SettingsError, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_and_overrides() -> None:
    settings = ServiceSettings.from_env(
        {"FRAUD_AUDIT_TOPIC": "audit.v2", "FRAUD_CHECKPOINT_INTERVAL_S": "2.5"}
    )
    assert settings.audit_topic == "audit.v2" and settings.checkpoint_interval_s == 2.5
    assert settings.transactions_topic == "transactions" and settings.batch_size == 2000


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        ServiceSettings.from_env(
            {"FRAUD_BATCH_SIZE": "0", "FRAUD_MODEL": "svm", "FRAUD_METRICS_PORT": "http"}
        )
    message = str(error.value)
    assert "FRAUD_BATCH_SIZE" in message and "FRAUD_MODEL" in message and "FRAUD_METRICS_PORT" in message


def test_secrets_are_not_logged() -> None:
    redacted = ServiceSettings.from_env({"FRAUD_PSEUDONYM_KEY": "s3cret"}).redacted()
    assert redacted["pseudonym_key"] is True and "s3cret" not in str(redacted)


def test_env_file_and_bad_settings_exit_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    env = tmp_path / "detector.env"
    env.write_text("# comment\nFRAUD_BATCH_SIZE=10\n\nFRAUD_GROUP_ID = g1\n")
    assert read_env_file(env) == {"FRAUD_BATCH_SIZE": "10", "FRAUD_GROUP_ID": "g1"}
    env.write_text("FRAUD_BATCH_SIZE=-3\n")
    assert main(["run", "--env-file", str(env)]) == 2
    assert "FRAUD_BATCH_SIZE: must be at least 1" in capsys.readouterr().err


def test_readme_documents_every_setting() -> None:
    assert settings_table() in README.read_text()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FRAUD_METRICS_PORT": "99999"}, "FRAUD_METRICS_PORT: must be at most 65535, got 99999"),
        ({"FRAUD_METRICS_PORT": "http"}, "FRAUD_METRICS_PORT: expected an integer, got 'http'"),
        ({"FRAUD_BATCH_TIMEOUT_MS": "0"}, "FRAUD_BATCH_TIMEOUT_MS: must be at least 1, got 0"),
        ({"FRAUD_CHECKPOINT_INTERVAL_S": "soon"}, "FRAUD_CHECKPOINT_INTERVAL_S: not a duration: 'soon'"),
        ({"FRAUD_MODEL": "svm"}, "FRAUD_MODEL: must be 'logistic_regression'"),
        ({"FRAUD_LOG_LEVEL": "loud"}, "FRAUD_LOG_LEVEL: must be 'debug', 'info', 'warning' or 'error'"),
        ({"FRAUD_AUDIT_TOPIC": "fraud audit"}, "FRAUD_AUDIT_TOPIC: a topic name is 1 to 249 letters"),
        ({"FRAUD_REPLICATION_FACTOR": "1.5"}, "FRAUD_REPLICATION_FACTOR: expected an integer, got '1.5'"),
    ],
)
def test_each_bad_value_is_refused_with_the_variable_and_the_reason(environ: dict, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        ServiceSettings.from_env(environ)
    (problem,) = str(error.value).splitlines()[1:]
    assert problem.strip().startswith(message)


def test_durations_and_log_levels_are_read_as_people_write_them() -> None:
    settings = ServiceSettings.from_env({"FRAUD_CHECKPOINT_INTERVAL_S": "5m", "FRAUD_LOG_LEVEL": "WARNING"})
    assert settings.checkpoint_interval_s == 300.0 and settings.log_level == "warning"
    assert ServiceSettings.from_env({"FRAUD_CHECKPOINT_INTERVAL_S": "2.5"}).checkpoint_interval_s == 2.5


def test_an_empty_variable_keeps_the_default_and_a_replaced_copy_is_validated() -> None:
    settings = ServiceSettings.from_env({"FRAUD_BATCH_SIZE": ""})
    assert settings.batch_size == 2000
    assert settings.replaced(batch_size=10).batch_size == 10
    with pytest.raises(SettingsError, match="batch_size: must be at least 1"):
        settings.replaced(batch_size=0)


def test_run_help_lists_every_setting_with_its_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "FRAUD_BATCH_SIZE (default 2000)" in out and "most input records per Kafka transaction" in out
    assert all(name in out for name in ENVIRONMENT_NAMES.values())
