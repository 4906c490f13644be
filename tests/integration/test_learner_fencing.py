"""A learner another has fenced learns it in bounded time, whatever it was doing, and exits as fenced.

It learns it from the coordinator, at a transaction of its own. Two ways it missed it: a fencing
that showed as the bare ``_FATAL`` of a ``produce()`` was taken for a passing failure (the learner
recovered, and its new producer fenced the newer learner instead, which exited in its place), and
an idle learner began no transaction until its next checkpoint. The end-to-end case, with scorers
and processes, is in test_shared_service.py.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from structlog.testing import capture_logs

from detector.engine.config import EngineConfig
from detector.service.fencing import fatal_cause
from detector.service.learner import LearnerService
from detector.service.settings import ServiceSettings
from tests.integration.service_harness import ServiceTopics, wait_until

pytestmark = pytest.mark.kafka


def _producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
    producer.init_transactions(30)
    return producer


def test_a_produce_refused_with_a_bare_fatal_error_is_resolved_to_the_fencing(
    kafka_bootstrap: str, make_topic: Any
) -> None:
    topic = make_topic("fenced", partitions=1)
    transactional_id = f"{topic}-txn"
    first = _producer(kafka_bootstrap, transactional_id)
    first.begin_transaction()
    first.produce(topic, b"before", partition=0)
    assert first.flush(30) == 0  # the partition is in the open transaction
    _producer(kafka_bootstrap, transactional_id)  # the second fences the first and aborts its transaction
    first.produce(topic, b"after", partition=0)
    # The broker refuses the old epoch and the producer turns fatal; poll() and flush() raise the
    # cause once, to whoever serves the callbacks then (here, this flush).
    with contextlib.suppress(KafkaException):
        first.flush(30)
    with pytest.raises(KafkaException) as refused:
        first.produce(topic, b"later", partition=0)
    bare = refused.value.args[0]
    assert bare.code() == KafkaError._FATAL, bare  # which says nothing of a fencing
    cause = fatal_cause(first, bare)
    assert cause.code() == KafkaError._FENCED and cause.fatal(), cause


def test_an_idle_learner_another_has_fenced_exits_before_its_next_checkpoint(kafka_bootstrap: str) -> None:
    topics = ServiceTopics()
    topics.create_inputs(kafka_bootstrap, partitions=2)
    # No update ever comes, and the next checkpoint is ten minutes away.
    env = topics.env(kafka_bootstrap, FRAUD_SHARING="learner", FRAUD_CHECKPOINT_INTERVAL_S="600")
    settings = ServiceSettings.from_env(env)
    first, second = (LearnerService(settings, EngineConfig(), environ={}) for _ in range(2))
    codes: dict[str, int] = {}

    def start(name: str, learner: LearnerService) -> threading.Thread:
        thread = threading.Thread(target=lambda: codes.setdefault(name, learner.run()), name=name)
        thread.daemon = True
        thread.start()
        return thread

    with capture_logs() as logs:
        recovered = lambda: [e for e in logs if e["event"] == "learner_recovered"]  # noqa: E731
        threads = [start("first", first)]
        try:
            wait_until(lambda: len(recovered()) == 1 or "first" in codes, 60, "the first learner's start")
            threads.append(start("second", second))
            wait_until(lambda: len(recovered()) == 2 or "second" in codes, 60, "the second learner's start")
            wait_until(lambda: "first" in codes, 120, "the first learner to exit, fenced")
        finally:
            first.stopping.set()
            second.stopping.set()
            for thread in threads:
                thread.join(60)
    assert codes == {"first": 1, "second": 0}, codes
    (fenced,) = [e for e in logs if e["event"] == "learner_fenced"]
    assert "fenced" in fenced["error"]
    assert not [e for e in logs if e["event"] == "kafka_failure"]
