"""``fraud-detector demo``: the whole pipeline on this machine for a couple of minutes, with no Docker.

A local Kafka broker (:mod:`devbroker`) in a temporary directory; the detector service as a child
process, started as in production (``fraud-detector run``, configured by environment); and the
simulator in a thread, publishing the ``drift`` preset through the producers' Kafka sink, compressed
so that the drift falls within the run (:mod:`devkit.demo_stream`). Progress is read from the
service's own ``/metrics``.

Whatever happens (end of the run, an error, Ctrl-C, SIGTERM), everything is stopped in reverse
order: the simulator is told to stop and joined, the service gets SIGTERM (its graceful path), and
the broker is stopped and its directory removed. Before the broker goes, the audit trail is read
back into the analyst report, scored against the simulator's ground truth.

Each step of that teardown is bounded by ``STOP_GRACE_S``, after which a process is killed and
the simulator thread (a daemon) left behind, so that an interrupt ends the demo within seconds
on a loaded machine too: nothing of an interrupted run is kept, so nothing is worth waiting for.
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from detector.audit.quality import DAY_S
from detector.kafka_config import client_config
from detector.service.metrics_page import scrape
from detector.service.settings import ServiceSettings, SettingsError
from devbroker import LocalKafka
from devbroker.errors import DevbrokerError
from devkit.demo_progress import ProgressLine, Reading
from devkit.demo_stream import DAYS_PER_SECOND, DRIFT_DAY, StreamThread, demo_config
from devkit.demo_summary import read_report, summary
from devkit.ports import free_port, http_status
from devkit.process import ServiceProcess
from devkit.settings import settings_env
from devkit.topics import create_service_topics

STARTUP_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 20.0  # after the stream stops, how long the detector may take to catch up
STOP_GRACE_S = 5.0  # how long each part may take to stop when the demo is torn down


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


def run_demo(duration_s: float, output: Path, seed: int, environ: dict[str, str]) -> int:
    """The demo; 0 when it ran to its summary, 1 when it failed, 130 when interrupted."""
    if not duration_s > 0:
        raise SettingsError(f"--duration must be above 0 seconds, got {duration_s:g}")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    output.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as cleanup:
            _run(duration_s, output, seed, environ, cleanup)
        return 0
    except (DemoError, DevbrokerError) as error:
        print(f"fraud-detector demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        # The interpreter's last collection would walk the run's whole heap, seconds on a busy
        # machine; the process ends next, and nothing in that heap needs a finaliser.
        gc.freeze()


def _run(duration_s: float, output: Path, seed: int, environ: dict[str, str], cleanup: ExitStack) -> None:
    say("starting a local Kafka broker ...")
    broker = LocalKafka()
    cleanup.callback(broker.close, STOP_GRACE_S)
    broker.start()
    settings = ServiceSettings.from_env(environ).replaced(
        bootstrap_servers=broker.bootstrap_servers,
        group_id="fraud-demo",
        instance_id="demo",
        metrics_port=free_port(),
        checkpoint_interval_s=10.0,
        # One partition, so one engine sees every fraud: with three, each would see a third, and
        # drift detection needs enough errors to tell a changed pattern from chance.
        topic_partitions=1,
    )
    service_env = {**environ, **settings_env(settings)}
    client = client_config(settings.bootstrap_servers, environ=service_env)
    # Every topic now, so the simulator never publishes into an auto-created one.
    create_service_topics(settings, settings.topic_partitions, client)
    say(
        f"Kafka at {broker.bootstrap_servers} ready in {broker.start_seconds:.0f}s; starting the detector ..."
    )
    detector = ServiceProcess(service_env, output / "detector.log")
    cleanup.callback(detector.stop, STOP_GRACE_S)
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}"
    _wait_until_ready(detector, metrics_url)

    stream = StreamThread(demo_config(seed), client, settings, speed=DAYS_PER_SECOND * DAY_S)
    say(
        f"detector ready (metrics: {metrics_url}/metrics); streaming the drift preset for {duration_s:.0f}s"
        f" at {DAYS_PER_SECOND:g} event-time days a second: the fraud pattern changes on day"
        f" {DRIFT_DAY:.0f}, {DRIFT_DAY / DAYS_PER_SECOND:.0f}s in"
    )
    began = time.monotonic()
    stream.start()
    cleanup.callback(stream.join, STOP_GRACE_S)
    cleanup.callback(stream.stop)
    final = _watch(stream, detector, metrics_url, began, duration_s)
    stream.stop()
    stream.join()
    if stream.error is not None:
        raise stream.error
    final = _drain(detector, metrics_url, began, final)
    code = detector.stop()
    if code != 0:
        raise DemoError(f"the detector exited with code {code}; see {detector.log_path}")
    say("reading the audit trail back for the report ...")
    report = read_report(client, settings, stream, output)
    text = summary(report, stream, final, output)
    (output / "summary.txt").write_text(text + "\n")
    print(text)


def _watch(
    stream: StreamThread, detector: ServiceProcess, url: str, began: float, duration_s: float
) -> Reading:
    """Show progress until the run's time is up or the stream has ended; the last reading."""
    line = ProgressLine(sys.stdout)
    latest = Reading.read(scrape(f"{url}/metrics"), 0.0)
    try:
        while (left := duration_s - (time.monotonic() - began)) > 0 and stream.is_alive():
            time.sleep(min(line.interval, left))
            if not detector.alive():
                raise DemoError(f"the detector stopped during the run; see {detector.log_path}")
            latest = Reading.read(scrape(f"{url}/metrics"), time.monotonic() - began)
            line.show(latest, stream.day)
    finally:
        line.close()
    return latest


def _drain(detector: ServiceProcess, url: str, began: float, latest: Reading) -> Reading:
    """Give the detector a moment to decide what was published before it is stopped."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while latest.lag > 0 and time.monotonic() < deadline and detector.alive():
        time.sleep(1.0)
        latest = Reading.read(scrape(f"{url}/metrics"), time.monotonic() - began)
    return latest


def _wait_until_ready(detector: ServiceProcess, url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while http_status(f"{url}/readyz", timeout=2) != 200:  # not listening yet, or 503: not ready
        if not detector.alive():
            raise DemoError(f"the detector exited while starting; see {detector.log_path}")
        if time.monotonic() > deadline:
            raise DemoError(
                f"the detector was not ready within {STARTUP_TIMEOUT_S:.0f}s; see {detector.log_path}"
            )
        time.sleep(0.5)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def say(text: str) -> None:
    print(text, flush=True)
