"""Another process joined the group as this instance: the service stops, and says so in its exit code.

Both of an instance's Kafka identities come from ``FRAUD_INSTANCE_ID``: its transactional id
(``<group>-<instance id>``) and its static group membership (``group.instance.id``). A process
started with the same id, the restart of this one or a duplicate deployment, fences both: its
``init_transactions`` bumps the producer epoch, and its join takes over the membership, which
librdkafka reports to the fenced consumer as a fatal error. Fencing of the producer alone is not
taken for this (a transaction open past its timeout looks the same, see transaction.py); the
consumer's fatal error is, but not at once: a lone consumer can be fenced by its own join, sent
before a broker restart and answered after it. The service joins again with a new consumer; fenced
again within :data:`FENCE_WINDOW_S`, it exits with :data:`EXIT_FENCED`. Two processes with one id
thus settle in a round or two: each rejoin fences the other, and the second fence of either ends it.
"""

from __future__ import annotations

import time

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

log = structlog.get_logger("detector.service")

# The exit codes of `fraud-detector run` (README, Operations: Restarts).
EXIT_STOPPED = 0  # stopped on request (SIGTERM, SIGINT)
EXIT_KAFKA_FAILED = 1  # a Kafka failure it could not recover from, logged as `kafka_fatal`
EXIT_REFUSED = 2  # a setting, the topic layout or the credentials refused at start
EXIT_FENCED = 3  # another process took over this FRAUD_INSTANCE_ID, logged as `instance_fenced`


class InstanceFenced(Exception):
    """The group membership of this instance was taken over by another process with its id."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error


def consumer_fenced(error: KafkaError) -> bool:
    """Whether an error of the group's consumer means its membership was taken over.

    librdkafka raises a consumer's fatal error only for a fenced static member
    (``FENCED_INSTANCE_ID``), handed to ``consume()`` as a ``_FATAL`` error whose ``fatal()`` is
    false.
    """
    return error.fatal() or error.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID)


# What librdkafka reports when the broker has bumped the producer's epoch, also after a timeout.
_PRODUCER_FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def producer_fenced(error: KafkaError) -> bool:
    """Whether the producer's epoch was bumped: by another process with its transactional id, or by
    the broker aborting a transaction open too long (:func:`timed_out`)."""
    return error.code() in _PRODUCER_FENCED


def fatal_cause(producer: Producer, error: KafkaError) -> KafkaError:
    """``error``, or the error that made ``producer`` fatal when ``error`` only says that it is.

    A fencing seen by a background request (a produce or an AddPartitionsToTxn of the open
    transaction) makes the producer fatal, and its next ``produce()`` then raises a bare ``_FATAL``
    ("Unable to produce message: Local: Fatal error") that does not say why; ``poll()`` raises the
    cause only once. A transactional call raises it every time: ``begin_transaction()`` at once,
    without a request; with a transaction open, as after a produce, it only refuses (``_STATE``).
    """
    if error.code() != KafkaError._FATAL:
        return error
    try:
        producer.begin_transaction()
    except KafkaException as exception:
        cause: KafkaError = exception.args[0]
        if cause.fatal():
            return cause
    return error


def timed_out(error: KafkaError, open_s: float, timeout_ms: int) -> bool:
    """Whether a fencing is the broker aborting a transaction open past its timeout, logged as such:
    no other process is involved, and a new producer is the remedy, not an exit."""
    if not producer_fenced(error) or open_s * 1000 < timeout_ms:
        return False
    log.error(
        "transaction_timed_out",
        open_s=round(open_s, 1),
        timeout_ms=timeout_ms,
        error=str(error),
        hint="the broker aborted a transaction open past FRAUD_TRANSACTION_TIMEOUT_MS; no other"
        " instance is involved",
    )
    return True


def membership_taken(error: KafkaError) -> bool:
    """Whether a transaction's offsets were refused because another process joined the group as
    this instance: the broker says so to the producer at once, while the consumer may only learn it
    at its next ``consume()``, which a recovery that keeps failing never reaches."""
    return error.code() == KafkaError.FENCED_INSTANCE_ID


FENCE_WINDOW_S = 120.0


class FenceTolerance:
    """Tolerates one fencing of the consumer per :data:`FENCE_WINDOW_S`."""

    def __init__(self) -> None:
        self._last: float | None = None

    def tolerated(self) -> bool:
        """Whether this fencing may be answered by joining again (and notes it)."""
        now = time.monotonic()
        tolerated = self._last is None or now - self._last > FENCE_WINDOW_S
        self._last = now
        return tolerated
