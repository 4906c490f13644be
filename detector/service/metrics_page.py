"""A ``/metrics`` page read back: the demo's progress line and the tests read the service's numbers
as Prometheus would."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class MetricsPage:
    """A ``/metrics`` page read back, for the demo's progress line and the tests' checks."""

    samples: tuple[Sample, ...]

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(
            sample.value
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )


def scrape(url: str, timeout: float = 5.0) -> MetricsPage:
    """Read a metrics page (raises :class:`OSError` when nothing answers)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return MetricsPage(tuple(s for family in text_string_to_metric_families(text) for s in family.samples))
