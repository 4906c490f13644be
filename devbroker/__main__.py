"""``devbroker fetch|start|stop|status``: a background Kafka broker per checkout, for demos and manual work.

The broker's data, log and a state file (pid, bootstrap servers) live in ``.cache/kafka/``, so ``stop``
and ``status`` work from any later shell.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from confluent_kafka import KafkaException

from devbroker.broker import LocalKafka, port_is_free, probe_admin
from devbroker.errors import DevbrokerError
from devbroker.jars import cache_dir, ensure_jars, kafka_version

DEFAULT_PORT = 9092
HOST = "127.0.0.1"
STATE_NAME = "devbroker.json"


def _state_path() -> Path:
    return cache_dir() / STATE_NAME


def _read_state() -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(_state_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def is_our_broker(pid: int, properties_path: str) -> bool:
    """Whether ``pid`` is still the broker the state file recorded.

    PIDs get reused after a reboot or a crash, so only a JVM running ``kafka.Kafka`` on our own
    server.properties counts; anything else is never signalled.
    """
    shown = subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return "kafka.Kafka" in shown.stdout and properties_path in shown.stdout


def _running_state() -> dict[str, object] | None:
    state = _read_state()
    if state is None or not is_our_broker(int(str(state["pid"])), str(state["properties"])):
        return None
    return state


def _fetch(_args: argparse.Namespace) -> int:
    lib_dir = cache_dir() / "lib"
    began = time.monotonic()
    fetched = ensure_jars(lib_dir)
    what = "fetched into" if fetched else "already in"
    print(f"Kafka {kafka_version(lib_dir)} jars {what} {lib_dir} ({time.monotonic() - began:.1f}s)")
    return 0


def _start(args: argparse.Namespace) -> int:
    running = _running_state()
    if running is not None:
        print(f"already running: {running['bootstrap']} (pid {running['pid']})")
        print("stop it with: devbroker stop   (or: make broker-stop)")
        return 0
    for port in (args.port, args.port + 1):
        if not port_is_free(HOST, port):
            raise DevbrokerError(f"port {port} on {HOST} is taken; choose other ports with --port")
    kafka_dir = cache_dir()
    broker = LocalKafka(
        kafka_dir / "data",
        port=args.port,
        controller_port=args.port + 1,
        detached=True,
        lib_dir=kafka_dir / "lib",
    )
    broker.start()
    state = {
        "pid": broker.pid,
        "bootstrap": broker.bootstrap_servers,
        "properties": str(broker.properties_path),
        "log": str(broker.log_path),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _state_path().write_text(json.dumps(state, indent=2) + "\n")
    print(broker.bootstrap_servers)
    print(
        f"Kafka {kafka_version(broker.lib_dir)} broker running (pid {broker.pid}), "
        f"started in {broker.start_seconds:.1f}s (of which jar check/fetch {broker.fetch_seconds:.1f}s)"
    )
    print(f"  export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    print(f"  log:  {broker.log_path}")
    print("  stop: devbroker stop   (or: make broker-stop)")
    return 0


def _stop(args: argparse.Namespace) -> int:
    state = _read_state()
    if state is None:
        print("no broker recorded; nothing to stop")
        return 0
    pid, properties = int(str(state["pid"])), str(state["properties"])
    if is_our_broker(pid, properties):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while is_our_broker(pid, properties) and time.monotonic() < deadline:
            time.sleep(0.2)
        if is_our_broker(pid, properties):
            os.kill(pid, signal.SIGKILL)
            print(f"broker pid {pid} ignored SIGTERM for {args.timeout:.0f}s: killed")
        else:
            print(f"stopped broker pid {pid} ({state['bootstrap']})")
    else:
        print(f"the recorded broker (pid {pid}) was not running")
    _state_path().unlink(missing_ok=True)
    return 0


def _status(_args: argparse.Namespace) -> int:
    state = _running_state()
    if state is None:
        print("not running")
        return 3
    try:
        probe_admin(str(state["bootstrap"])).list_topics(timeout=5)
        answering = "answering"
    except KafkaException:
        answering = "NOT answering"
    print(f"running: {state['bootstrap']} (pid {state['pid']}, {answering}); log: {state['log']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``devbroker`` command; exit 3 from ``status`` means not running."""
    parser = argparse.ArgumentParser(prog="devbroker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('fraud-detector')}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="fetch the Kafka jars from Maven Central (skipped when current)")
    start = commands.add_parser("start", help="start the broker in the background (fetches jars if needed)")
    start.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="client port (default %(default)s); controller: port+1"
    )
    stop = commands.add_parser("stop", help="stop the broker that `devbroker start` started")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    commands.add_parser("status", help="say whether the broker runs and answers (exit 3 if not running)")
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "fetch": _fetch,
        "start": _start,
        "stop": _stop,
        "status": _status,
    }
    try:
        return handlers[args.command](args)
    except DevbrokerError as err:
        print(f"devbroker: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
