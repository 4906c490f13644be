"""Connecting to Kafka while the engine's modules are still loading: a start's two slow steps at once.

A restarted instance's first decision waits on both: importing River (about a second: its drift
package imports scipy.stats) and Kafka (checking the topics, fencing the old producer, joining the
group: 0.3-1 s on a loaded machine). ``fraud-detector run`` starts a :class:`Connection` before
it imports the engine: the Kafka calls wait in librdkafka's threads, without the GIL, while the
main thread imports. The service takes the connection over once it is built; a partition's
assignment reaches it only from its own ``consume()``, so nothing is recovered before then.

The connection carries the instance's Kafka identity: a start refused afterwards for its engine
configuration has joined the group and fenced its predecessor's producer, as a process killed at
that moment would have. It closes what it opened before it exits with code 2 (:meth:`abandon`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from confluent_kafka import Consumer, TopicPartition

from detector.service.clients import Clients, RebalanceListener
from detector.service.health import Readiness
from detector.service.settings import ServiceSettings
from detector.service.topic_map import TopicMap
from detector.service.topics import ensure_topics


class Connection:
    """The topics checked and the clients opened, in a thread; :meth:`established` waits for it."""

    def __init__(self, settings: ServiceSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.topics = TopicMap.of(settings)
        self.readiness = Readiness()
        self.clients = Clients(settings, environ, self.topics, self.readiness)
        self.listener: RebalanceListener | None = None  # the service's, given before its first consume
        self._thread = threading.Thread(target=self._connect, name="connecting", daemon=True)
        self._input_partitions: int | None = None
        self._failure: BaseException | None = None

    def start(self) -> Connection:
        self._thread.start()
        return self

    def established(self) -> int:
        """The number of input partitions once connected; raises what connecting raised (a topic
        layout or credentials refused, Kafka unreachable)."""
        if self._thread.ident is None:  # not started early: a service built in-process
            self._thread.start()
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        assert self._input_partitions is not None
        return self._input_partitions

    def abandon(self) -> None:
        """Close the clients of a start refused meanwhile; a connection still being made is left to
        end with the process (with no broker to answer, it would wait 30 s)."""
        if not self._thread.is_alive():
            self.clients.close()

    # -- the consumer's rebalance callbacks, passed on to the service's listener -----------------

    def on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        self._listening().on_assign(consumer, assigned)

    def on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self._listening().on_revoke(consumer, revoked)

    def on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        self._listening().on_lost(consumer, lost)

    # -- internals ----------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            self._input_partitions = ensure_topics(self.clients.connected_admin(), self.settings)
            self.clients.open(self)
        except BaseException as failure:  # raised again in the main thread by established()
            self._failure = failure

    def _listening(self) -> RebalanceListener:
        assert self.listener is not None, "a consumer callback before the service took the connection"
        return self.listener
