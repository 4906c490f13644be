"""An operator's mistake ends a command with exit code 2 and one line saying what to fix, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from producers import replay_cli, simulate_cli


def detector(argv: list[str], **environ: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAUD_METRICS_PORT": "0", **environ}
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_env_file(tmp_path: Path) -> None:
    run = detector(["run", "--env-file", str(tmp_path / "missing.env")])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert (
        run.stderr.strip()
        == f"fraud-detector: --env-file {tmp_path / 'missing.env'}: cannot read: No such file or directory"
    )


def test_a_port_out_of_range() -> None:
    run = detector(["run"], FRAUD_METRICS_PORT="99999")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        "fraud-detector: invalid settings:",
        "  FRAUD_METRICS_PORT: must be at most 65535, got 99999",
    ]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ('{"label_horizon": "60x"}', "label_horizon: not a duration: '60x'"),
        ('{"max_pending": "lots"}', "max_pending: expected an integer, got 'lots'"),
        ('{"label_horizon": ', "not JSON"),
    ],
)
def test_a_bad_engine_config_file(tmp_path: Path, config: str, problem: str) -> None:
    path = tmp_path / "engine.json"
    path.write_text(config)
    run = detector(["run"], FRAUD_ENGINE_CONFIG=str(path))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert problem in run.stderr and run.stderr.startswith(f"fraud-detector: FRAUD_ENGINE_CONFIG '{path}'")


def test_a_demo_output_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = detector(["demo", "--output", str(blocker / "out"), "--duration", "1"])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "--output" in run.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--speed", "-1"], "argument --speed: expected a number above 0, got '-1'"),
        (["--rate", "0"], "argument --rate: expected a number above 0, got '0'"),
        (["--flush-timeout", "-1"], "argument --flush-timeout: expected a number of at least 0"),
        (["--truth-file", "{blocker}/truth.jsonl"], "--truth-file"),
    ],
)
def test_simulate_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = [arg.format(blocker=blocker) for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        simulate_cli.main([*argv, "--transactions", "5", "--output", "jsonl", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("fraud-simulate: error: ") and message in last


def test_replay_durations_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "tx.jsonl"
    source.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        replay_cli.main([str(source), "--label-delay", "7x"])
    assert exit_info.value.code == 2
    assert "argument --label-delay: not a duration: '7x'" in capsys.readouterr().err


def test_the_demo_without_the_dev_kit_says_where_it_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The detector image ships the product only: ``fraud-detector demo`` there is one line, exit 2."""
    from detector import cli

    monkeypatch.setitem(sys.modules, "devkit.demo", None)  # importing it now raises ImportError
    assert cli.main(["demo", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "fraud-detector: the demo needs a checkout of the project: run `make demo` there"
    )
