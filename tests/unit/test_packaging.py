"""What an installer and a newcomer meet: the license field, --version, and a missing optional extra."""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

import detector.audit
from detector import cli
from devbroker import __main__ as devbroker_cli

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_string_with_a_setuptools_that_takes_it_quietly() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert floor and int(floor.group(1)) >= 77, "older setuptools warn that an SPDX string is a table"


@pytest.mark.parametrize(("prog", "main"), [("fraud-detector", cli.main), ("devbroker", devbroker_cli.main)])
def test_version_prints_the_installed_package_version(
    prog: str, main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"{prog} {version('fraud-detector')}\n"


def without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import matplotlib`` fail, as in the detector's image, and forget what imported it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for name in ("cli", "report", "plots"):
        monkeypatch.delitem(sys.modules, f"detector.audit.{name}", raising=False)
        monkeypatch.delattr(detector.audit, name, raising=False)  # else `from detector.audit import` finds it


def test_audit_report_without_matplotlib_names_the_extra_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    without_matplotlib(monkeypatch)
    assert cli.main(["audit", "report", "--out", str(tmp_path / "report")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "matplotlib" in line and "fraud-detector[report]" in line
    assert not (tmp_path / "report").exists()


def test_the_other_audit_commands_load_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    without_matplotlib(monkeypatch)
    audit_cli = importlib.import_module("detector.audit.cli")
    assert callable(audit_cli.verify_command) and callable(audit_cli.replay_command)
    with pytest.raises(ImportError):
        importlib.import_module("detector.audit.report")
