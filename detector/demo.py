"""``fraud-detector demo``: the whole pipeline on this machine for a couple of minutes, with no Docker.

A local Kafka broker (:mod:`devbroker`) in a temporary directory; the detector service as a child
process, started as in production (``fraud-detector run``, configured by environment); and the
simulator in a thread, publishing the ``drift`` preset through the producers' Kafka sink. The stream
is compressed so that the day-30 change of fraud pattern, and the detector's reaction, fall within
the run: fewer cards, labels within hours rather than weeks, more fraud, and event time played at
``DAYS_PER_SECOND``, a pace a small machine decides in real time. Progress is read from the
service's own ``/metrics``.

Whatever happens (end of the run, an error, Ctrl-C, SIGTERM), everything is stopped in reverse
order: the simulator is told to stop and joined, the service gets SIGTERM (its graceful path), and
the broker is stopped and its directory removed. Before the broker goes, the audit trail is read
back into the analyst report, scored against the simulator's ground truth.
"""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TextIO

import numpy as np
from confluent_kafka.admin import AdminClient

from detector.audit.collection import Labels, collect
from detector.audit.quality import DAY_S, FRAUD, Joined
from detector.audit.reader import TopicReader
from detector.audit.report import REPORT_NAME, Report, build_report, write_report
from detector.audit.selection import RecordFilter
from detector.engine import outputs
from detector.engine.records import Label, Transaction
from detector.evaluation import average_precision, roc_auc
from detector.kafka_config import client_config
from detector.service.metrics import MetricsPage, scrape
from detector.service.settings import ServiceSettings, SettingsError
from detector.service.topics import ensure_topics
from devbroker import LocalKafka
from devbroker.errors import DevbrokerError
from producers.config import SimulationConfig, preset
from producers.labels import DelayDistribution
from producers.pacing import EventTimePacer
from producers.publishing import Progress, publish
from producers.simulator import SimulatedTransaction, Simulator
from producers.sinks import DeliveryReport, KafkaSink

DAYS_PER_SECOND = 0.5  # about 1,100 events a second: a 90-second run plays 45 days, past the drift
DRIFT_DAY = 30.0  # when the drift preset changes the fraud pattern
HOUR = 3600.0
STARTUP_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 20.0  # after the stream stops, how long the detector may take to catch up
STOP_TIMEOUT_S = 60.0
DRIFT_SIGNALS = (outputs.DRIFT_WARNING, outputs.DRIFT_DETECTED)


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


def demo_config(seed: int) -> SimulationConfig:
    """The drift preset at a scale this machine decides in real time, with labels soon enough to learn."""
    base = preset("drift")
    return replace(
        base,
        seed=seed,
        fraud_rate=0.01,
        population=replace(base.population, cards=500, terminals=100),
        labels=replace(
            base.labels,
            fraud_delay=DelayDistribution(median=12 * HOUR, sigma=0.5, low=HOUR, high=3 * 24 * HOUR),
            legit_delay=DelayDistribution(median=4 * HOUR),
        ),
    )


class StreamThread(threading.Thread):
    """Publishes the simulated stream, paced on event time, until it ends or :meth:`stop` is called.

    It keeps the ground truth of every transaction it sent, for scoring the decisions afterwards.
    """

    def __init__(
        self, config: SimulationConfig, client: dict[str, str], settings: ServiceSettings, speed: float
    ):
        super().__init__(name="simulator", daemon=True)
        self.config = config
        self.labels_topic = settings.labels_topic
        self.start_time = config.start_time
        self.truth: dict[str, bool] = {}
        self.day = 0.0  # event-time days published so far
        self.report: DeliveryReport | None = None
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._new_sink = partial(KafkaSink, client, settings.transactions_topic, settings.labels_topic)
        self._speed = speed

    def stop(self) -> None:
        self._stopping.set()

    def day_of(self, moment: float) -> float:
        """Event-time days since the stream began."""
        return (moment - self.start_time) / DAY_S

    def run(self) -> None:
        """Publish; the producer lives only as long as this, so none is left when the broker stops."""
        sink = self._new_sink()
        try:
            publish(self._events(), sink, EventTimePacer(self._speed), Progress(enabled=False))
        except BaseException as error:  # handed to the main thread, which reports it
            self.error = error
        finally:
            self.report = sink.close()

    def _events(self) -> Iterator[Transaction | Label]:
        for event in Simulator(self.config):
            if self._stopping.is_set():
                return
            if isinstance(event, SimulatedTransaction):
                self.truth[event.transaction.transaction_id] = event.is_fraud
                self.day = self.day_of(event.event_time)
                yield event.transaction
            else:
                yield event


class DetectorProcess:
    """``fraud-detector run`` as a child process, its log in a file; stopped by PID with SIGTERM."""

    def __init__(self, environ: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "detector.cli", "run"],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not finished within ``STOP_TIMEOUT_S``; the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass(frozen=True)
class Reading:
    """What the progress line shows, from one scrape of the service's metrics."""

    seconds: float
    consumed: float
    decisions: float
    alerts: float
    drift_signals: float
    generation: float
    lag: float

    @classmethod
    def read(cls, page: MetricsPage, seconds: float) -> Reading:
        generations = [s.value for s in page.samples if s.name == "fraud_model_generation"]
        return cls(
            seconds=seconds,
            consumed=page.total("fraud_records_consumed_total"),
            decisions=page.total("fraud_decisions_total"),
            alerts=page.total("fraud_decisions_total", outcome="review")
            + page.total("fraud_decisions_total", outcome="block"),
            drift_signals=sum(page.total("fraud_engine_events_total", kind=kind) for kind in DRIFT_SIGNALS),
            generation=max(generations, default=1),
            lag=page.total("fraud_consumer_lag"),
        )


class ProgressLine:
    """One line rewritten in place on a terminal; elsewhere (CI, a file) a line every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 1.0 if self.tty else 5.0
        self._last: Reading | None = None

    def show(self, now: Reading, day: float) -> None:
        last = self._last or replace(now, seconds=0.0, consumed=0.0)
        rate = (now.consumed - last.consumed) / max(now.seconds - last.seconds, 1e-9)
        self._last = now
        text = (
            f"{now.seconds:5.0f}s  day {day:4.1f}  {rate:6,.0f} events/s  decisions {now.decisions:8,.0f}"
            f"  alerts {now.alerts:6,.0f}  drift signals {now.drift_signals:3.0f}"
            f"  model generation {now.generation:.0f}  lag {now.lag:6,.0f}"
        )
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


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


def _run(duration_s: float, output: Path, seed: int, environ: dict[str, str], cleanup: ExitStack) -> None:
    say("starting a local Kafka broker ...")
    broker = LocalKafka()
    cleanup.callback(broker.close)
    broker.start()
    port = _free_port()
    service_env = {
        **environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "FRAUD_GROUP_ID": "fraud-demo",
        "FRAUD_INSTANCE_ID": "demo",
        "FRAUD_METRICS_PORT": str(port),
        "FRAUD_CHECKPOINT_INTERVAL_S": "10",
        # One partition, so one engine sees every fraud: with three, each would see a third, and
        # drift detection needs enough errors to tell a changed pattern from chance.
        "FRAUD_TOPIC_PARTITIONS": "1",
    }
    settings = ServiceSettings.from_env(service_env)
    client = client_config(settings.bootstrap_servers, environ=service_env)
    _create_topics(client, settings)
    say(
        f"Kafka at {broker.bootstrap_servers} ready in {broker.start_seconds:.0f}s; starting the detector ..."
    )
    detector = DetectorProcess(service_env, output / "detector.log")
    cleanup.callback(detector.stop)
    metrics_url = f"http://127.0.0.1:{port}"
    _wait_until_ready(detector, metrics_url)

    config = demo_config(seed)
    stream = StreamThread(config, client, settings, speed=DAYS_PER_SECOND * DAY_S)
    say(
        f"detector ready (metrics: {metrics_url}/metrics); streaming the drift preset for {duration_s:.0f}s"
        f" at {DAYS_PER_SECOND:g} event-time days a second: the fraud pattern changes on day"
        f" {DRIFT_DAY:.0f}, {DRIFT_DAY / DAYS_PER_SECOND:.0f}s in"
    )
    began = time.monotonic()
    stream.start()
    cleanup.callback(stream.join)
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
    report = _report(client, settings, stream, output)
    summary = _summary(report, stream, final, output)
    (output / "summary.txt").write_text(summary + "\n")
    print(summary)


def _watch(
    stream: StreamThread, detector: DetectorProcess, url: str, began: float, duration_s: float
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


def _drain(detector: DetectorProcess, url: str, began: float, latest: Reading) -> Reading:
    """Give the detector a moment to decide what was published before it is stopped."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while latest.lag > 0 and time.monotonic() < deadline and detector.alive():
        time.sleep(1.0)
        latest = Reading.read(scrape(f"{url}/metrics"), time.monotonic() - began)
    return latest


def _report(client: dict[str, str], settings: ServiceSettings, stream: StreamThread, output: Path) -> Report:
    """The analyst report from the audit topic, with the simulator's ground truth as labels."""
    say("reading the audit trail back for the report ...")
    labels = Labels(outcomes=stream.truth)
    with TopicReader(client, settings.audit_topic) as reader:
        collection = collect(reader.messages(), RecordFilter(), explain=labels.frauds())
    report = build_report(collection, labels)
    sources = {
        "audit topic": f"{settings.audit_topic} (demo broker)",
        "labels": "the simulator's ground truth (every transaction, not only the labelled ones)",
        "event time": "all",
    }
    write_report(report, output / "report", sources)
    return report


def _summary(report: Report, stream: StreamThread, final: Reading, output: Path) -> str:
    """The run in ten lines: volumes, outcomes, drift and how well the scores ranked the fraud."""
    collection, joined = report.collection, report.joined
    outcomes = Counter(collection.outcomes)
    events = Counter(event.kind for event in collection.events)
    drift_day = stream.start_time + DRIFT_DAY * DAY_S
    signals = sorted(event.time for event in collection.events if event.kind in DRIFT_SIGNALS)
    after = [moment for moment in signals if moment >= drift_day]
    first_after = (
        f"; the first after day {DRIFT_DAY:.0f} on day {stream.day_of(after[0]):.1f}" if after else ""
    )
    transactions = len(stream.truth)
    labels = stream.report.delivered[stream.labels_topic] if stream.report else 0
    rows = {
        "simulated": f"{stream.day:.1f} event-time days: {transactions:,} transactions"
        f" ({sum(stream.truth.values()) / max(transactions, 1):.2%} fraud) and {labels:,} labels",
        "decided": f"{len(joined.times):,} transactions; {final.consumed / max(final.seconds, 1.0):,.0f}"
        f" input records a second over {final.seconds:.0f}s",
        "decisions": ", ".join(f"{name} {outcomes[name]:,}" for name in ("approve", "review", "block")),
        "dead letters": f"{collection.record_types['rejected']:,}",
        "drift signals": f"{len(signals)} warnings and drifts{first_after}",
        "model changes": f"{events[outputs.MODEL_SWAPPED]} swaps, {events[outputs.MODEL_RESET]} resets;"
        f" highest generation {final.generation:.0f}",
        "prequential AUC": f"{report.auc:.3f} overall (AP {report.overall.average_precision:.3f});"
        f" {_ranking(joined, joined.times < drift_day)} before day {DRIFT_DAY:.0f},"
        f" {_ranking(joined, joined.times >= drift_day)} after",
        "report": str(output / "report" / REPORT_NAME),
        "detector log": str(output / "detector.log"),
    }
    width = max(map(len, rows))
    return "\n".join(["", "Demo summary", *(f"  {name:<{width}}  {value}" for name, value in rows.items())])


def _ranking(joined: Joined, rows: np.ndarray) -> str:
    """AUC and average precision of the scores over ``rows`` against the ground truth."""
    rows = rows & joined.labelled
    fraud, scores = joined.labels[rows] == FRAUD, joined.scores[rows]
    auc = roc_auc(fraud, scores)
    return "n/a" if math.isnan(auc) else f"{auc:.3f} (AP {average_precision(fraud, scores):.3f})"


def _create_topics(client: dict[str, str], settings: ServiceSettings) -> None:
    """Create every topic now, so the simulator never publishes into an auto-created one, and wait until
    each partition has a leader (a freshly created partition refuses reads and writes for a moment)."""
    admin = AdminClient(client)
    ensure_topics(admin, settings)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        topics = admin.list_topics(timeout=10).topics
        if all(p.leader >= 0 for t in topics.values() for p in t.partitions.values()):
            return
        if time.monotonic() > deadline:
            raise DemoError("the demo topics got no partition leaders")
        time.sleep(0.2)


def _wait_until_ready(detector: DetectorProcess, url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if not detector.alive():
            raise DemoError(f"the detector exited while starting; see {detector.log_path}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass  # not listening yet, or 503: not ready
        if time.monotonic() > deadline:
            raise DemoError(
                f"the detector was not ready within {STARTUP_TIMEOUT_S:.0f}s; see {detector.log_path}"
            )
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def say(text: str) -> None:
    print(text, flush=True)
