"""Command-line options and the run loop shared by fraud-simulate and fraud-replay."""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path

from confluent_kafka import KafkaException

from detector.engine.records import Label, Transaction
from detector.history.options import key_value
from detector.kafka_config import client_config
from producers.pacing import EventTimePacer, Pacer, RatePacer, Unpaced
from producers.publishing import Progress, print_summary, progress_enabled, publish
from producers.sinks import ConnectionRefused, DeliveryReport, JsonlSink, KafkaSink, Sink
from producers.topics import InputTopicsError, ensure_input_topics

log = logging.getLogger("producers")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def positive_number(text: str) -> float:
    """An argparse type for a finite number above 0 (a rate, a speed)."""
    return _number(text, above_zero=True)


def non_negative_number(text: str) -> float:
    """An argparse type for a finite number of at least 0 (a timeout)."""
    return _number(text, above_zero=False)


def _number(text: str, above_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (above_zero and value == 0):
        raise argparse.ArgumentTypeError(
            f"expected a number {'above' if above_zero else 'of at least'} 0, got {text!r}"
        )
    return value


def add_version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('fraud-detector')}")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output",
        choices=("kafka", "jsonl"),
        default="kafka",
        help="publish to Kafka (default) or write OUTPUT_DIR/<topic>.jsonl files",
    )
    group.add_argument(
        "--output-dir", type=Path, default=Path("out"), help="for --output jsonl (default: out)"
    )
    group.add_argument(
        "--bootstrap-servers",
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092)",
    )
    group.add_argument(
        "--kafka-config",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any librdkafka producer setting, repeatable; overrides the defaults and the environment "
        "(KAFKA_<SETTING> variables such as KAFKA_SASL_USERNAME for sasl.username, and a "
        "KAFKA_CLIENT_PROPERTIES file of key=value lines)",
    )
    topics = "missing ones are created with $FRAUD_TOPIC_PARTITIONS partitions (default 3), as the detector"
    group.add_argument(
        "--transactions-topic", default="transactions", help=f"(default: transactions; {topics})"
    )
    group.add_argument("--labels-topic", default="labels", help="(default: labels)")
    group.add_argument(
        "--flush-timeout",
        type=non_negative_number,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait at the end for outstanding deliveries; what is still undelivered then "
        "counts as failed (default: 300)",
    )


def add_pacing_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pacing (default: as fast as possible)").add_mutually_exclusive_group()
    group.add_argument(
        "--rate", type=positive_number, metavar="EVENTS_PER_SECOND", help="send at this steady rate"
    )
    group.add_argument(
        "--speed",
        type=positive_number,
        metavar="FACTOR",
        help="follow event time at FACTOR times real time (1: real time, 3600: an hour a second)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (there is none when not on a TTY)"
    )


def make_sink(args: argparse.Namespace) -> Sink:
    if args.output == "jsonl":
        return JsonlSink(args.output_dir, args.transactions_topic, args.labels_topic)
    config = client_config(args.bootstrap_servers, dict(args.kafka_config))
    ensure_input_topics(config, (args.transactions_topic, args.labels_topic), os.environ)
    return KafkaSink(config, args.transactions_topic, args.labels_topic, args.flush_timeout)


def make_pacer(args: argparse.Namespace) -> Pacer:
    if args.rate is not None:
        return RatePacer(args.rate)
    if args.speed is not None:
        return EventTimePacer(args.speed)
    return Unpaced()


def run(
    args: argparse.Namespace,
    events: Iterable[Transaction | Label],
    summary: Callable[[], dict[str, object]],
    stop_on: tuple[type[Exception], ...] = (),
) -> int:
    """Publish ``events`` as ``args`` say, then print ``summary()`` and the delivery counts.

    Returns the exit code: 0 when everything was delivered, 1 when anything failed or a ``stop_on``
    error ended the run, 130 when interrupted. The sink is flushed in every case.
    """
    try:
        sink = make_sink(args)
    except (KafkaException, OSError, ValueError, ConnectionRefused, InputTopicsError) as error:
        log.error("cannot open the output: %s", error)
        return EXIT_FAILED
    code = 0
    progress = Progress(progress_enabled(args.quiet))
    ending: tuple[type[Exception], ...] = (ConnectionRefused, *stop_on)
    began = time.monotonic()
    try:
        publish(events, sink, make_pacer(args), progress)
    except ending as error:
        log.error("%s", error)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        log.warning("interrupted: delivering what was sent so far")
        code = EXIT_INTERRUPTED
    finally:
        report = sink.close()
    elapsed = time.monotonic() - began
    print_summary({**summary(), **delivery_summary(report, args), **rate_summary(progress, elapsed)})
    if report.failed:
        log.error("%d message(s) failed; see the summary for the reasons", report.failed)
        return code or EXIT_FAILED
    return code


def delivery_summary(report: DeliveryReport, args: argparse.Namespace) -> dict[str, object]:
    counts: dict[str, object] = {
        "delivered transactions": report.delivered[args.transactions_topic],
        "delivered labels": report.delivered[args.labels_topic],
        "failed": report.failed,
    }
    counts.update({f"failed ({reason})": count for reason, count in report.failures.most_common()})
    return counts


def rate_summary(progress: Progress, elapsed_s: float) -> dict[str, object]:
    """Elapsed time and event rate, flush included: in a log they are all a run leaves of its pace."""
    events = progress.transactions + progress.labels
    return {"elapsed": f"{elapsed_s:.1f} s", "rate": f"{events / max(elapsed_s, 1e-9):,.0f} events/s"}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
