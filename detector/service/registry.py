"""What every process of the service exports alike: its own resources, the build, its Kafka transactions."""

from __future__ import annotations

import platform
from importlib.metadata import version

from prometheus_client import CollectorRegistry, Counter, Info, ProcessCollector


def process_registry() -> CollectorRegistry:
    """A registry of one process's own: its CPU, memory and open files, and the running build."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Info("fraud_build", "the running build", registry=registry).info(
        {"version": version("fraud-detector"), "python_version": platform.python_version()}
    )
    return registry


def kafka_transactions_counter(registry: CollectorRegistry) -> Counter:
    return Counter("fraud_kafka_transactions", "Kafka transactions, by result", ["result"], registry=registry)
