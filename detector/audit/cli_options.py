"""Options the audit commands share: event-time bounds, and the Kafka client settings."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from detector.engine.records import InvalidInput, parse_timestamp
from detector.kafka_config import client_config, parse_settings


def add_time_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "event time (TIME: RFC 3339 with an offset, or a date for UTC midnight)"
    )
    group.add_argument("--since", type=moment, metavar="TIME", help="records at or after TIME")
    group.add_argument("--until", type=moment, metavar="TIME", help="records before TIME")


def moment(text: str) -> float:
    """RFC 3339 with an offset, or a plain date meaning midnight UTC, as epoch seconds."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
        return parse_timestamp(text, "time")
    except (ValueError, InvalidInput) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def kafka_client(args: argparse.Namespace) -> dict[str, str]:
    return client_config(args.bootstrap_servers, parse_settings(args.kafka_config))
