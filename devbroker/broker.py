"""A real single-node Apache Kafka (KRaft, broker and controller in one JVM) run from Maven jars.

Tests and demos need real Kafka semantics (transactions, consumer groups) on machines without Docker,
so this runs the same ``kafka.Kafka`` main class the official scripts run.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType, TracebackType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devbroker.errors import DevbrokerError
from devbroker.jars import cache_dir, ensure_jars

LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
CONTROLLER_LISTENER = "CONTROLLER"
_PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child, where a dlopen could deadlock on a lock another thread held.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


@dataclass(frozen=True)
class Listener:
    """A client listener of the broker; port 0 means pick a free one at the first start.

    The broker always has a ``PLAINTEXT`` one; more (say ``Listener("SASL_SSL", "SASL_SSL")``, with
    their ``ssl.*``/``sasl.*`` settings in ``extra_properties``) are added next to it.
    """

    name: str
    protocol: str
    port: int = 0


def new_cluster_id() -> str:
    """A cluster id as ``StorageTool random-uuid`` prints it, without paying for a JVM start.

    Like Kafka's ``Uuid.randomUuid`` it never starts with '-', which command lines would take for a flag.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def broker_properties(
    host: str,
    controller_port: int,
    listeners: Sequence[Listener],
    log_dir: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """server.properties for one combined broker+controller node; ``extra`` overrides any default.

    The first listener is the inter-broker one. The replication factors and ISR minimums of the
    internal topics must be 1 on one node, or ``init_transactions()`` and consumer groups hang.
    """
    client = ",".join(f"{listener.name}://{host}:{listener.port}" for listener in listeners)
    protocols = [f"{listener.name}:{listener.protocol}" for listener in listeners]
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"{client},{CONTROLLER_LISTENER}://{host}:{controller_port}",
        "advertised.listeners": client,
        "controller.listener.names": CONTROLLER_LISTENER,
        "inter.broker.listener.name": listeners[0].name,
        "listener.security.protocol.map": ",".join([*protocols, f"{CONTROLLER_LISTENER}:PLAINTEXT"]),
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": "1",
        # One partition each instead of 50: creating them is most of the first group join and
        # the first init_transactions() on a small machine.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    props.update(extra or {})
    return props


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def authorizing_properties(
    listener: str, users: Mapping[str, str], super_users: Iterable[str] = ()
) -> dict[str, str]:
    """SASL/PLAIN ``users`` (name -> password) on ``listener``, and KRaft's ACL authorizer.

    Requests are then refused unless an ACL allows them (``allow.everyone.if.no.acl.found`` stays
    false), except from ``super_users`` and from ``ANONYMOUS``: the broker's own connections to its
    controller come over the PLAINTEXT listeners, which therefore stay open to anyone who can reach
    them. Keep those on the loopback address, as here.
    """
    accounts = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return {
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "super.users": ";".join(["User:ANONYMOUS", *(f"User:{name}" for name in super_users)]),
        "sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.{listener.lower()}.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {accounts};"
        ),
    }


def render_properties(props: Mapping[str, str]) -> str:
    """Java .properties text; values are escaped so paths and JAAS configs survive ``Properties.load``."""
    lines = []
    for key, value in props.items():
        escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        if escaped.startswith(" "):
            escaped = "\\" + escaped
        lines.append(f"{key}={escaped}")
    return "\n".join(lines) + "\n"


def _free_ports(host: str, count: int) -> list[int]:
    """Ports the kernel just handed out; all sockets stay open until the end so no two are equal."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (the CLI's fixed port may be taken)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 32_768))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def probe_admin(bootstrap: str) -> AdminClient:
    """An AdminClient for asking whether a broker answers; refused connections are expected, so quiet."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            # The default backoff grows to 10s while the JVM starts, which would delay readiness.
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            # confluent-kafka's stub types the config's values as str | int | float | bool: no callbacks
            "logger": logging.getLogger("devbroker.probe"),  # type: ignore[dict-item]
            "error_cb": lambda _err: None,  # type: ignore[dict-item]
        }
    )


def _die_with_parent() -> None:
    """Runs in the forked child: the kernel sends the broker SIGTERM when its parent dies, even by SIGKILL.

    The parent is the forking thread, so start a non-detached broker from a thread that outlives it
    (pytest fixtures run on the main thread).
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalKafka:
    """One Kafka broker process, restartable on the same ports and data dir.

    Use it as a context manager, or call ``start()``/``stop()`` (``stop()`` keeps the data, so a later
    ``start()`` is a broker restart) and ``close()`` at the end. Unless ``detached``, a broker never
    outlives this interpreter: exit, SIGTERM and SIGHUP stop it, and on Linux even SIGKILL does.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int = 0,
        controller_port: int = 0,
        host: str = "127.0.0.1",
        extra_listeners: Iterable[Listener] = (),
        extra_properties: Mapping[str, str] | None = None,
        heap: str = "512m",
        start_timeout: float = 120.0,
        detached: bool = False,
        lib_dir: Path | None = None,
    ) -> None:
        """``data_dir`` None means a fresh temporary one that ``close()`` deletes; port 0 means a free one.

        ``detached`` brokers run in their own session and survive this interpreter (the CLI's).
        """
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="devbroker-")) if data_dir is None else Path(data_dir)
        self.host = host
        self._listeners = [Listener("PLAINTEXT", "PLAINTEXT", port), *extra_listeners]
        self._controller_port = controller_port
        self.extra_properties = dict(extra_properties or {})
        self.heap = heap
        self.start_timeout = start_timeout
        self.detached = detached
        self.lib_dir = lib_dir or cache_dir() / "lib"
        self._proc: subprocess.Popen[bytes] | None = None
        self.fetch_seconds: float | None = None
        self.start_seconds: float | None = None

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        """The broker's stdout and log4j output, appended across restarts."""
        return self.data_dir / "broker.log"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the PLAINTEXT listener."""
        return self.listener_bootstrap("PLAINTEXT")

    def listener_bootstrap(self, name: str) -> str:
        """``host:port`` of the named listener (ports are fixed at the first start)."""
        for listener in self._listeners:
            if listener.name == name:
                if listener.port == 0:
                    raise DevbrokerError("the broker has no port yet: start() picks it")
                return f"{self.host}:{listener.port}"
        raise DevbrokerError(f"no listener named {name!r}")

    def properties(self) -> dict[str, str]:
        """The server.properties this broker runs with (ports must have been picked)."""
        return broker_properties(
            self.host, self._controller_port, self._listeners, self.kraft_dir, self.extra_properties
        )

    def start(self) -> None:
        """Fetch the jars if needed, format storage once, launch the JVM and wait until it answers."""
        if self.running:
            return
        began = time.monotonic()
        ensure_jars(self.lib_dir)
        self.fetch_seconds = time.monotonic() - began
        self._pick_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(render_properties(self.properties()))
        if not (self.kraft_dir / "meta.properties").is_file():
            self._format_storage()
        self._launch()
        try:
            self._wait_until_ready(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker (a clean shutdown), SIGKILL it after ``timeout``; data stays for a restart."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        _RUNNING.discard(self)

    def close(self, timeout: float = 30.0) -> None:
        """Stop (SIGKILL after ``timeout``), and delete the data dir if this object made it."""
        self.stop(timeout)
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _pick_ports(self) -> None:
        """Pick free ports once; later starts reuse them, which a restart with the same clients needs."""
        wanted = sum(1 for listener in self._listeners if listener.port == 0) + (self._controller_port == 0)
        free = iter(_free_ports(self.host, wanted))
        self._listeners = [
            replace(listener, port=next(free)) if listener.port == 0 else listener
            for listener in self._listeners
        ]
        if self._controller_port == 0:
            self._controller_port = next(free)

    def _java_cmd(self, main_class: str, *args: str, heap: str) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if java is None:
            raise DevbrokerError("Kafka 4.x needs Java 17 or newer: install a JDK or set JAVA_HOME")
        return [
            java,
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}",
            "-cp",
            str(self.lib_dir / "*"),
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.properties_path),
            "-g",
            heap="256m",
        )
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise DevbrokerError(f"formatting Kafka storage failed (exit {done.returncode}):\n{output}")

    def _launch(self) -> None:
        cmd = self._java_cmd("kafka.Kafka", str(self.properties_path), heap=self.heap)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                # The child only calls an already-resolved libc function, which is fork-safe.
                preexec_fn=None if self.detached or _PRCTL is None else _die_with_parent,  # noqa: PLW1509
            )
        if not self.detached:
            _RUNNING.add(self)
            _install_signal_handlers()

    def _wait_until_ready(self, deadline: float) -> None:
        """Ready means an AdminClient gets metadata back, not just that the port is open."""
        admin = probe_admin(self.bootstrap_servers)
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise DevbrokerError(
                    f"the Kafka broker exited (code {code}) while starting; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                admin.list_topics(timeout=1.0)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise DevbrokerError(
                        f"the Kafka broker did not answer within {self.start_timeout:.0f}s; "
                        f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                    ) from None
                time.sleep(0.2)


_RUNNING: set[LocalKafka] = set()
_handlers_installed = False


def _stop_all() -> None:
    for broker in list(_RUNNING):
        broker.stop()


def _stop_all_then_die(signum: int, _frame: FrameType | None) -> None:
    """Stop our brokers, then die of the same signal as if no handler had been there."""
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Only where nobody else handles the signal, and only from the main thread (Python's rule)."""
    global _handlers_installed  # noqa: PLW0603 - one-time process-wide setup
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _stop_all_then_die)


atexit.register(_stop_all)
