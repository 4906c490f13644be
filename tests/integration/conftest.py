"""Integration tests leave nothing running, whether they pass or fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.process import ServiceProcess


@pytest.fixture(autouse=True)
def no_service_left_running() -> Iterator[None]:
    """A test that fails before stopping its services would leave them retrying a stopped broker."""
    yield
    ServiceProcess.kill_leftovers()
