"""A transaction held open past FRAUD_TRANSACTION_TIMEOUT_MS is logged as timed out, not as fenced.

The broker aborts such a transaction and bumps the producer's epoch, and librdkafka then says the
producer was fenced by a newer instance. The service (a scorer, or the learner) runs in a thread of
the test, with its first transaction held open past the timeout; everything else is the real
service on the real broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from confluent_kafka import Producer
from structlog.testing import capture_logs

from detector.engine.config import EngineConfig
from detector.engine.learner import SharedLearner
from detector.service.app import DetectorService
from detector.service.learner import LearnerService
from detector.service.partitions import Partitions
from detector.service.settings import ServiceSettings
from detector.state.database import StateDatabase
from devkit.publishing import publish
from tests.integration.service_harness import ServiceTopics, wait_until
from tests.integration.test_service import simulated

pytestmark = pytest.mark.kafka
TIMEOUT_MS = 1_000
# Past the timeout and the broker's next look for timed-out transactions (every 10 s by default).
HOLD_S = 13.0


def test_a_transaction_held_past_its_timeout_is_reported_as_timed_out(kafka_bootstrap: str) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=1)
    env = topics.env(kafka_bootstrap, FRAUD_TRANSACTION_TIMEOUT_MS=str(TIMEOUT_MS))
    service = DetectorService(ServiceSettings.from_env(env), EngineConfig(), environ={})
    commit = service.transactions.commit
    held: list[bool] = []

    def commit_late(owned: Partitions) -> None:
        if not held:
            held.append(True)
            time.sleep(HOLD_S)  # a slow step inside the open transaction
        commit(owned)

    service.transactions.commit = commit_late  # type: ignore[method-assign]
    publish(topics.settings(kafka_bootstrap), simulated(300))
    with capture_logs() as logs:
        thread = threading.Thread(target=service.run, name="detector", daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: service.transactions_committed > 0 or not thread.is_alive(), 120, "a commit after it"
            )
        finally:
            service.stop()
            thread.join(60)
    events = _by_event(logs)
    _assert_reported_as_timed_out(held, events)
    assert "transaction_failed" not in events  # no word of a newer instance beside it
    assert "kafka_resynchronised" in events  # and it went on with a new producer


def test_a_learner_transaction_held_past_its_timeout_is_recovered_from_not_taken_for_a_fencing(
    kafka_bootstrap: str,
) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=2)
    env = topics.env(
        kafka_bootstrap,
        FRAUD_TRANSACTION_TIMEOUT_MS=str(TIMEOUT_MS),
        FRAUD_SHARING="learner",
        FRAUD_CHECKPOINT_INTERVAL_S="1",
    )
    learner = LearnerService(ServiceSettings.from_env(env), EngineConfig(), environ={})
    held: list[bool] = []
    exit_code: list[int] = []
    with capture_logs() as logs:
        thread = threading.Thread(target=lambda: exit_code.append(learner.run()), name="learner", daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: learner.checkpoints is not None or not thread.is_alive(), 60, "the learner's start"
            )
            assert learner.checkpoints is not None
            write = learner.checkpoints.write

            def write_late(  # a slow step inside the open transaction
                producer: Producer,
                learner: SharedLearner,
                positions: dict[int, int],
                database: StateDatabase | None,
            ) -> None:
                write(producer, learner, positions, database)
                if not held:
                    held.append(True)
                    producer.flush(5)
                    time.sleep(HOLD_S)

            learner.checkpoints.write = write_late  # type: ignore[method-assign]
            recovered = lambda: [e for e in logs if e["event"] == "learner_recovered"]  # noqa: E731
            wait_until(lambda: len(recovered()) >= 2 or not thread.is_alive(), 120, "a recovery after it")
        finally:
            learner.stopping.set()
            thread.join(60)
    events = _by_event(logs)
    _assert_reported_as_timed_out(held, events)
    assert "learner_fenced" not in events
    assert exit_code == [0]  # it ran on until stopped


def _by_event(logs: list[MutableMapping[str, Any]]) -> dict[str, list[MutableMapping[str, Any]]]:
    events: dict[str, list[MutableMapping[str, Any]]] = {}
    for entry in logs:
        events.setdefault(entry["event"], []).append(entry)
    return events


def _assert_reported_as_timed_out(
    held: list[bool], events: dict[str, list[MutableMapping[str, Any]]]
) -> None:
    assert held and "transaction_timed_out" in events, sorted(events)
    timed_out = events["transaction_timed_out"][0]
    assert timed_out["timeout_ms"] == TIMEOUT_MS and timed_out["open_s"] * 1000 >= TIMEOUT_MS
    assert "FRAUD_TRANSACTION_TIMEOUT_MS" in timed_out["hint"]
