"""Concept-drift detection on the labelled error stream, and data-drift watching on scores.

At fraud-like rates the overall error bit is a poor signal: it is dominated by the rare class, so DDM
raises false alarms and ADWIN needs tens of thousands of events. The monitor therefore watches two
bits separately, each with its own detector:

* ``miss``: on fraud labels, 1 when the transaction was not flagged (score below review);
* ``false_alarm``: on legitimate labels, 1 when it was flagged.

Only a rise of an error rate is a drift. Two-sided detectors (ADWIN) also fire when the error falls,
for example while a model learns; those signals are dropped. Detectors with a warning zone (DDM,
HDDM_A, HDDM_W) report warnings, which the engine uses to start a background model.

The defaults differ per stream for cost: the miss stream is updated once per fraud label, so
HDDM_A (quick on rare errors, with a warning zone) is affordable there; the false-alarm stream is
updated on nearly every label, and River's HDDM_A clones its statistics on most updates of a
mostly-zero stream (measured: about 145 us per update, more than the model), so it gets ADWIN.

>>> monitor = ErrorDriftMonitor(DriftConfig(miss_detector="hddm_a"))
>>> signals = [monitor.update(is_fraud=True, flagged=i < 300) for i in range(600)]
>>> any(s is not None and s.level == "drift" for s in signals)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as validated_dataclass
from river import base, drift
from river.drift import binary

from detector.validation import CONFIG_RULES, Count, NonNegativeCount

DETECTOR_KINDS = ("hddm_a", "hddm_w", "ddm", "eddm", "adwin", "page_hinkley")
WARNING, DRIFT = "warning", "drift"


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class DriftConfig:
    """How drift is detected and what the engine does about it (checked when built)."""

    enabled: bool = True
    miss_detector: Literal[DETECTOR_KINDS] = "hddm_a"
    false_alarm_detector: Literal[DETECTOR_KINDS] = "adwin"
    # "swap": a warning or a drift trains a background model, promoted once it is ready and better;
    # "reset": a drift replaces the model by a new, untrained one at once.
    recovery: Literal["swap", "reset"] = "swap"
    # a model's error is not monitored while it is still learning its first labels
    warmup_labels: NonNegativeCount = 2_000
    min_background_labels: Count = 2_000
    min_background_frauds: NonNegativeCount = 10
    challenge_every: Count = 100  # labels between two comparisons of the background model with the champion
    # AUC the background model must gain over the champion to replace it
    promotion_margin: Annotated[float, Field(ge=0, lt=1)] = 0.02
    max_background_labels: Count = 20_000  # a background model never promoted by then is discarded
    # ADWIN confidence on the score stream (data drift, reported only)
    score_drift_delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5


def build_detector(kind: str) -> base.DriftDetector:
    """A fresh detector; Page-Hinkley is made one-sided so that only rises count."""
    factories = {
        "hddm_a": binary.HDDMA,
        "hddm_w": binary.HDDMW,
        "ddm": binary.DDM,
        "eddm": binary.EDDM,
        "adwin": drift.ADWIN,
        "page_hinkley": lambda: drift.PageHinkley(mode="up"),
    }
    return factories[kind]()


@dataclass(frozen=True)
class DriftSignal:
    """A warning or a drift on one error stream, with the error rate it saw before the signal."""

    stream: str
    level: str
    error_rate: float


class _ErrorStream:
    """One detector on one error bit, with the running error rate since it was (re)started."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.detector = build_detector(kind)
        self.errors = 0
        self.seen = 0

    def update(self, error: bool) -> DriftSignal | None:
        before = getattr(self.detector, "estimation", None)
        self.detector.update(int(error))
        self.errors += error
        self.seen += 1
        rate = self.errors / self.seen
        if self.detector.drift_detected:
            after = getattr(self.detector, "estimation", None)
            if before is not None and after is not None and after <= before:
                return None  # a two-sided detector saw the error fall: an improvement, not a drift
            return DriftSignal(self.name, DRIFT, rate)
        if getattr(self.detector, "warning_detected", False):
            return DriftSignal(self.name, WARNING, rate)
        return None


class ErrorDriftMonitor:
    """Concept drift from labels: misses on frauds and false alarms on legitimate transactions."""

    def __init__(self, config: DriftConfig) -> None:
        self._miss = _ErrorStream("miss", config.miss_detector)
        self._false_alarm = _ErrorStream("false_alarm", config.false_alarm_detector)

    def update(self, is_fraud: bool, flagged: bool) -> DriftSignal | None:
        """Feed one labelled outcome; returns a signal when the stream it belongs to raises one."""
        if is_fraud:
            return self._miss.update(not flagged)
        return self._false_alarm.update(flagged)


class ScoreDriftMonitor:
    """Data drift: ADWIN on the score distribution, no labels needed. Reported, never acted on."""

    def __init__(self, delta: float) -> None:
        self._detector = drift.ADWIN(delta=delta)

    def update(self, score: float) -> tuple[float, float] | None:
        """Returns (mean before, mean after) when the mean score has shifted."""
        before = self._detector.estimation
        self._detector.update(score)
        if self._detector.drift_detected:
            return before, self._detector.estimation
        return None
