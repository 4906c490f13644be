"""What only the tests need around the service: per-test names, chain checks of the audit, waits."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path

import orjson

from detector.audit.chain import GENESIS, verify_record
from detector.service.settings import ServiceSettings
from devkit.reading import CommittedReader
from devkit.settings import settings_env, unique_prefix, unique_settings
from devkit.topics import create_input_topics


class ServiceTopics:
    """Unique topic and group names for one test, and the service settings and environment that use them."""

    def __init__(self) -> None:
        self.prefix = unique_prefix("svc")
        names = self.settings(bootstrap="")  # only the names are wanted here
        self.transactions, self.labels = names.transactions_topic, names.labels_topic
        self.audit, self.decisions = names.audit_topic, names.decisions_topic
        self.dead_letter = names.dead_letter_topic

    def settings(self, bootstrap: str, instance: str = "i1") -> ServiceSettings:
        return unique_settings(bootstrap, self.prefix, instance_id=instance)

    def env(self, bootstrap: str, instance: str = "i1", **extra: str) -> dict[str, str]:
        return {**settings_env(self.settings(bootstrap, instance)), **extra}

    def create_inputs(self, bootstrap: str, partitions: int) -> None:
        create_input_topics(self.settings(bootstrap), partitions)


def audit_decisions(reader: CommittedReader, foreign: Collection[tuple[int, int]] = ()) -> Counter[str]:
    """Transaction id -> how many decision records; asserts each partition's chain verifies.

    ``foreign``: (partition, offset) of records written by hand, which must fail as foreign while
    the chain goes on across them.
    """
    decisions: Counter[str] = Counter()
    for partition, records in reader.records.items():
        seq, previous = 0, GENESIS
        for offset, value, _ in records:
            record = orjson.loads(value)
            problem = verify_record(record, seq, previous, partition=partition)
            if (partition, offset) in foreign:
                assert problem is not None and problem.startswith("foreign"), problem
                continue
            assert problem is None, f"chain broken at partition {partition} offset {offset}: {problem}"
            seq, previous = seq + 1, record["chain"]["hash"]
            if record["record_type"] == "decision":
                decisions[record["transaction_id"]] += 1
    return decisions


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def non_json_lines(log: Path) -> list[str]:
    """Lines of a service's output (stdout and stderr) that are not one JSON object each."""
    lines = []
    for line in log.read_bytes().splitlines():
        try:
            if isinstance(orjson.loads(line), dict):
                continue
        except orjson.JSONDecodeError:
            pass
        lines.append(line.decode(errors="replace"))
    return lines


def assert_clean_output(*logs: Path) -> None:
    """A service ends, however it ends, without a traceback and with nothing but JSON lines."""
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, text[text.index("Traceback") :][:2000]
        assert not non_json_lines(log), non_json_lines(log)[:5]
