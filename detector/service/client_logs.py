"""librdkafka's own log lines as structured JSON events, through structlog.

Left to itself librdkafka prints its log to stderr as ``%3|1796191327.543|FAIL|rdkafka#consumer-3|
...``: a broker outage once produced a thousand such lines among the JSON ones, which log
collectors cannot parse. Given the ``logger`` client setting, confluent-kafka hands each line to a
:class:`logging.Logger` instead (as ``logger.log(level, "%s [%s] %s", facility, client, text)``),
served from the client's poll and consume calls. The handler here turns each into one
``kafka_client_log`` event with its facility, client name and text as fields.

>>> import logging
>>> record = logging.LogRecord("librdkafka", logging.ERROR, "", 0, "%s [%s] %s",
...                            ("FAIL", "rdkafka#producer-1", "Connect failed"), None)
>>> client_log_fields(record)
{'facility': 'FAIL', 'client': 'rdkafka#producer-1', 'text': 'Connect failed'}
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from confluent_kafka import KafkaException

_log = structlog.get_logger("librdkafka")


def client_log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The facility, client name and text of one of librdkafka's lines, or its text alone."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 3:
        facility, client, text = args
        return {"facility": facility, "client": client, "text": text}
    return {"text": record.getMessage()}


class _StructlogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _log.log(record.levelno, "kafka_client_log", **client_log_fields(record))


def _client_logger() -> logging.Logger:
    logger = logging.getLogger("detector.librdkafka")
    if not logger.handlers:
        logger.addHandler(_StructlogHandler())
        logger.propagate = False  # not also to the root logger's stderr handler, if one is set
        logger.setLevel(logging.DEBUG)  # librdkafka filters by its own log_level and debug settings
    return logger


CLIENT_LOGGER = _client_logger()


@contextmanager
def kafka_errors_unmasked() -> Iterator[None]:
    """Let a Kafka failure out as the :class:`KafkaException` it is, not the ``SystemError`` that
    confluent-kafka can turn it into (confluent-kafka-python#1708): a log line delivered while a
    call's exception is pending calls this logger with Python's error indicator set. Seen when a
    fenced producer's ``flush()`` raised and logged at once."""
    try:
        yield
    except SystemError as error:
        if isinstance(error.__cause__, KafkaException):
            raise error.__cause__ from None
        raise
