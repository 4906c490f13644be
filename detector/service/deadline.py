"""A blocking Kafka client call that is given up on when it outlives its own timeout.

``send_offsets_to_transaction`` ignores its timeout when the group coordinator vanishes while the
call waits on it (confluentinc/librdkafka#5456, #5511), and can stay blocked after the broker is
back. Run in a daemon thread, such a call can be abandoned: the caller gets a ``_TIMED_OUT``
:class:`~confluent_kafka.KafkaException` and replaces the producer (the new one fences the old one
and aborts its transaction). The abandoned thread holds the old producer until librdkafka lets go.

>>> call_within(lambda: 42, timeout_s=60.0, what="an answer")
42
>>> call_within(lambda: 1 / 0, timeout_s=60.0, what="a division")
Traceback (most recent call last):
...
ZeroDivisionError: division by zero
>>> import time
>>> call_within(lambda: time.sleep(5), timeout_s=0.05, what="a nap")
Traceback (most recent call last):
...
cimpl.KafkaException: KafkaError{code=_TIMED_OUT,val=-185,str="a nap did not return within 0.05 s"}
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")


def call_within(action: Callable[[], T], timeout_s: float, what: str) -> T:
    """``action()``'s result or exception, or a non-retriable ``_TIMED_OUT`` after ``timeout_s``."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, action()))
        except BaseException as exception:  # handed to the caller's thread
            outcome.append((False, exception))

    worker = threading.Thread(target=run, name=f"kafka-call: {what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        reason = f"{what} did not return within {timeout_s:g} s"
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, reason, txn_requires_abort=True))
    succeeded, value = outcome[0]
    if not succeeded:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
