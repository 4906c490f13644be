"""A real single-node Apache Kafka for tests, demos and manual work, run from Maven jars without Docker."""

from devbroker.broker import Listener, LocalKafka, authorizing_properties
from devbroker.errors import DevbrokerError
from devbroker.jars import ensure_jars

__all__ = ["DevbrokerError", "Listener", "LocalKafka", "authorizing_properties", "ensure_jars"]
