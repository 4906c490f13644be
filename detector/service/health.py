"""The service's HTTP endpoints: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for orchestrators.

Liveness and readiness answer different questions. ``/healthz`` says the loop still turns (its
heartbeat is recent): failing it means restart the process. ``/readyz`` says the instance owns
partitions and can commit: failing it means do not count on it yet, e.g. during start-up or a
rebalance. The server runs in a daemon thread from before the service waits on Kafka, so
liveness is answered while start-up does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from detector.service.settings import ConfigurationError

METRICS_PATH, LIVENESS_PATH, READINESS_PATH = "/metrics", "/healthz", "/readyz"
# Longer than anything the loop legitimately blocks on: start-up and recovery wait up to 30 s per Kafka
# call, and a commit retries. A loop silent for this long is stuck, and a restart is the remedy.
LIVENESS_TIMEOUT_S = 120.0
STALLED_AFTER_S = 5.0  # a loop stuck this long in a Kafka call is not ready, though alive


@dataclass
class Readiness:
    """What the endpoints answer from, kept up to date by the loop, the clients and the rebalances."""

    assigned: bool = False  # owns partitions and holds their state
    brokers_down: bool = False  # the clients report no broker reachable
    progress: float = field(default_factory=time.monotonic)  # last time a consume or a commit returned
    heartbeat: float = field(default_factory=time.monotonic)  # last time the loop turned

    @property
    def ready(self) -> bool:
        """Owns partitions, the brokers answer, and the loop is not stuck in a Kafka call (a commit
        waiting on a vanished broker blocks for its whole timeout)."""
        return self.assigned and not self.brokers_down and time.monotonic() - self.progress < STALLED_AFTER_S

    def consumed(self) -> None:
        self.heartbeat = self.progress = time.monotonic()

    def committed(self) -> None:
        self.brokers_down = False
        self.progress = time.monotonic()


class HealthServer:
    """Serves the three endpoints on ``port`` (0 picks a free one, see :attr:`port`) of every interface."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        heartbeat: Callable[[], float],
        ready: Callable[[], bool],
        liveness_timeout_s: float = LIVENESS_TIMEOUT_S,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            METRICS_PATH: lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            LIVENESS_PATH: lambda: _status(time.monotonic() - heartbeat() < liveness_timeout_s),
            READINESS_PATH: lambda: _status(ready()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                code, content_type, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Scrapes every few seconds would drown the service's own log."""

        self._server = ThreadingHTTPServer(("", port), Handler)
        self._server.daemon_threads = True
        self._thread = Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _status(ok: bool) -> tuple[int, str, bytes]:
    return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"unavailable\n")


@contextmanager
def serving(
    port: int, registry: CollectorRegistry, heartbeat: Callable[[], float], ready: Callable[[], bool]
) -> Iterator[HealthServer | None]:
    """The server for the duration of the block; none when ``port`` is 0 (the setting that disables it)."""
    if port == 0:
        yield None
        return
    try:
        server = HealthServer(port, registry, heartbeat, ready)
    except OSError as error:
        raise ConfigurationError(f"FRAUD_METRICS_PORT {port}: cannot listen there: {error}") from error
    server.start()
    try:
        yield server
    finally:
        server.stop()
