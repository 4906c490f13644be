"""Settings come from the environment, are validated together, and are documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.cli import main, read_env_file
from detector.service.settings import ServiceSettings, SettingsError, settings_table

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
