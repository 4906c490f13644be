"""``fraud-detector``: run the service, and work with the audit trail.

Heavy modules (River, the Kafka client) are imported inside the commands, after the signal
handlers are installed, so a SIGTERM that arrives during start-up still ends the process cleanly.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from detector.service.settings import (
    ConfigurationError,
    ServiceSettings,
    SettingsError,
    settings_help,
    settings_table,
)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines allowed), as in a docker env file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"--env-file {path}: cannot read: {getattr(error, 'strerror', error)}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {stripped!r}")
        values[key.strip()] = value.strip()
    return values


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    return _serve("run", args, environ)


def learn(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """The one learner of a topology whose partitions share one model; 1 when another fenced it."""
    return _serve("learn", args, environ)


def _serve(command: str, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    merged = {**(read_env_file(args.env_file) if args.env_file else {}), **environ}
    settings = ServiceSettings.from_env(merged)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where is it stuck?

    import structlog
    from confluent_kafka import KafkaException

    from detector.service.connecting import Connection
    from detector.service.logs import configure_logging

    configure_logging(settings.log_level)
    connection = Connection(settings, merged).start() if command == "run" else None
    try:  # the engine's modules load while the connection is made (connecting.py)
        from detector.service.engine_setup import engine_config_for
        from detector.service.fencing import EXIT_FENCED, EXIT_KAFKA_FAILED, EXIT_STOPPED, InstanceFenced

        engine_config = engine_config_for(settings)
    except ConfigurationError:
        if connection is not None:
            connection.abandon()
        raise
    log = structlog.get_logger("detector")
    log.info("starting", command=command, settings=settings.redacted())
    code = EXIT_STOPPED
    try:
        if stopping.is_set():
            if connection is not None:
                connection.abandon()
        elif command == "learn":
            from detector.service.learner import LearnerService

            code = LearnerService(settings, engine_config, merged, stopping).run()
        else:
            from detector.service.app import DetectorService

            DetectorService(settings, engine_config, merged, stopping, connection).run()
    except InstanceFenced as fenced:
        hint = "another process runs with this FRAUD_INSTANCE_ID; each instance needs its own"
        log.error("instance_fenced", error=str(fenced), instance_id=settings.instance_id, hint=hint)
        code = EXIT_FENCED
    except KafkaException as failure:  # e.g. no transactional producer at start: one line, no traceback
        log.error("kafka_fatal", error=str(failure.args[0]), stop_requested=stopping.is_set())
        code = EXIT_STOPPED if stopping.is_set() else EXIT_KAFKA_FAILED
    log.info("exiting", exit_code=code)
    return code


def demo(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    try:
        from devkit.demo import run_demo
    except ImportError:  # the image ships the product, not the dev kit
        raise SettingsError("the demo needs a checkout of the project: run `make demo` there") from None
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingsError(f"--output {args.output}: cannot write there: {error.strerror}") from None

    return run_demo(args.duration, args.output, args.seed, dict(environ))


def backtest(arguments: list[str]) -> int:
    """Imported only when used: it brings in River."""
    from detector.backtest.cli import main as backtest_main

    return backtest_main(arguments)


def audit(arguments: list[str]) -> int:
    """The audit tools, imported only when used (they bring in the Kafka client)."""
    from detector.audit.cli import register

    parser = argparse.ArgumentParser(prog="fraud-detector")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *arguments])
    if args.audit_command == "report" and not _can_plot():
        print(REPORT_NEEDS_EXTRA, file=sys.stderr)
        return 2
    return args.func(args)


REPORT_NEEDS_EXTRA = (
    "fraud-detector audit report: matplotlib is not installed; install the report extra:"
    " pip install 'fraud-detector[report]'"
)


def _can_plot() -> bool:
    """The report's figures need matplotlib, an extra the service's image leaves out."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraud-detector", description="Streaming payment-fraud detection on Kafka."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('fraud-detector')}")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser(
        "run",
        help="run the detector service (settings from the environment)",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_parser.add_argument("--env-file", type=Path, help="KEY=VALUE file; the environment overrides it")
    run_parser.set_defaults(func=run)
    learn_parser = commands.add_parser(
        "learn",
        help="run the shared learner of a multi-partition deployment (settings as for run)",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    learn_parser.add_argument("--env-file", type=Path, help="KEY=VALUE file; the environment overrides it")
    learn_parser.set_defaults(func=learn)
    demo_parser = commands.add_parser(
        "demo",
        help="local Kafka, simulator with drift and the detector for a couple of minutes, then a report",
    )
    demo_parser.add_argument(
        "--duration",
        type=float,
        default=90.0,
        help="seconds of streaming (default 90: long enough to pass the drift on day 30)",
    )
    demo_parser.add_argument("--output", type=Path, default=Path("out/demo"), help="summary, log and report")
    demo_parser.add_argument("--seed", type=int, default=7, help="simulation seed (same seed, same stream)")
    demo_parser.set_defaults(func=demo)
    audit_parser = commands.add_parser(
        "audit", help="replay, verify or report on the audit trail (audit --help)", add_help=False
    )
    audit_parser.add_argument("arguments", nargs=argparse.REMAINDER)  # parsed by audit()
    backtest_parser = commands.add_parser(
        "backtest",
        help="run engine configurations on history files and compare (backtest --help)",
        add_help=False,
    )
    backtest_parser.add_argument("arguments", nargs=argparse.REMAINDER)  # parsed by backtest()
    settings_parser = commands.add_parser("settings", help="print the settings table (markdown)")
    settings_parser.set_defaults(func=lambda _: print(settings_table()) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["audit"]:
            return audit(argv[1:])
        if argv[:1] == ["backtest"]:
            return backtest(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (SettingsError, ConfigurationError) as error:
        print(f"fraud-detector: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
