"""A Kafka failure that confluent-kafka turned into a SystemError comes out as the KafkaException."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from detector.service.client_logs import kafka_errors_unmasked

FENCED = KafkaException(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))


def test_the_kafka_exception_behind_a_system_error_is_raised() -> None:
    with pytest.raises(KafkaException) as raised, kafka_errors_unmasked():
        # What confluent-kafka raises when its log callback runs with FENCED pending.
        raise SystemError("<class 'logging.LogRecord'> returned a result with an exception set") from FENCED
    assert raised.value is FENCED


def test_any_other_system_error_is_left_alone() -> None:
    with pytest.raises(SystemError), kafka_errors_unmasked():
        raise SystemError("something else")
