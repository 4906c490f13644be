"""Delayed, incomplete and sometimes wrong labels, as fraud operations produce them.

A fraud is usually learnt from a chargeback days to weeks after the payment; a legitimate payment is
taken as "not fraud" once it clears without a dispute, after a fixed delay. Some transactions are
never labelled and some labels are wrong. A label is stamped with the transaction's event time plus
its delay, so delays hold in event time whatever the replay speed. The delay follows the label that
is given: a fraud wrongly labelled "not fraud" is labelled at the clearing delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from producers.batch import LEGIT, Batch
from producers.durations import Seconds
from producers.population import DAY


@dataclass(frozen=True)
class DelayDistribution:
    """Log-normal around ``median`` with shape ``sigma``, clipped to ``[low, high]``.

    ``sigma`` 0 gives the fixed delay ``median``.
    """

    median: Seconds
    sigma: float = 0.0
    low: Seconds = 0.0
    high: Seconds | None = None

    def __post_init__(self) -> None:
        if self.sigma < 0 or self.median < 0:
            raise ValueError("median and sigma must be at least 0")
        if self.high is not None and not self.low <= self.median <= self.high:
            raise ValueError(f"the median {self.median} must be within [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` delays in whole seconds."""
        delays = self.median * np.exp(self.sigma * rng.standard_normal(n))
        return np.round(np.clip(delays, self.low, self.high))


@dataclass(frozen=True)
class LabelConfig:
    fraud_delay: DelayDistribution = field(
        default_factory=lambda: DelayDistribution(median=10 * DAY, sigma=0.6, low=1 * DAY, high=60 * DAY)
    )
    legit_delay: DelayDistribution = field(default_factory=lambda: DelayDistribution(median=3 * DAY))
    unlabelled_share: float = 0.05  # transactions that never get a label
    # Wrong labels, per true class: a fraud nobody disputes, and a legitimate payment disputed as
    # fraud ("friendly fraud"). They are separate because legitimate payments outnumber frauds
    # hundreds to one: one share for both would make most fraud labels wrong.
    missed_fraud_share: float = 0.01  # frauds labelled "not fraud"
    false_fraud_share: float = 0.01  # legitimate payments labelled "fraud"

    def __post_init__(self) -> None:
        for name in ("unlabelled_share", "missed_fraud_share", "false_fraud_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass(frozen=True)
class LabelPlan:
    """For each transaction of a batch: whether it gets a label, which, and after how long."""

    labelled: np.ndarray
    is_fraud: np.ndarray
    delays: np.ndarray


class Labeller:
    def __init__(self, config: LabelConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._rng = rng

    def plan(self, batch: Batch) -> LabelPlan:
        n = len(batch)
        rng = self._rng
        labelled = rng.random(n) >= self.config.unlabelled_share
        truth = batch.scenarios != LEGIT
        wrong_share = np.where(truth, self.config.missed_fraud_share, self.config.false_fraud_share)
        is_fraud = truth ^ (rng.random(n) < wrong_share)
        delays = np.where(
            is_fraud,
            self.config.fraud_delay.sample(rng, n),
            self.config.legit_delay.sample(rng, n),
        )
        return LabelPlan(labelled, is_fraud, delays)
