"""Concept-drift detection on the labelled error stream, and data-drift watching on scores.

At fraud-like rates the overall error bit is a poor signal: it is dominated by the rare class, so DDM
raises false alarms and ADWIN needs tens of thousands of events. The monitor therefore watches two
bits separately, each with its own detector:

* ``miss``: on fraud labels, 1 when the transaction was not flagged (score below review);
* ``false_alarm``: on legitimate labels, 1 when it was flagged.

Only a material rise of an error rate is a drift: a detector's signal is confirmed once the rate
over the stream's latest labels is well above the rate before them (``Materiality``), and a rise of
false alarms is reported as a warning without starting a recovery (``false_alarms_recover``). Why:
docs/drift-handling.md. Two-sided detectors (ADWIN) also fire when the error falls,
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

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as validated_dataclass
from river import base, drift
from river.drift import binary

from detector.validation import CONFIG_RULES, Count, Duration, NonNegativeCount, Probability

DetectorKind = Literal["hddm_a", "hddm_w", "ddm", "eddm", "adwin", "page_hinkley"]
WARNING, DRIFT = "warning", "drift"
MISS, FALSE_ALARM = "miss", "false_alarm"  # the two error streams


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class DriftConfig:
    """How drift is detected and what the engine does about it (checked when built)."""

    enabled: bool = True
    miss_detector: DetectorKind = "hddm_a"
    false_alarm_detector: DetectorKind = "adwin"
    # "swap": a warning or a drift trains a background model, promoted once it is ready and better;
    # "reset": a drift replaces the model by a new, untrained one at once.
    recovery: Literal["swap", "reset"] = "swap"
    # a model's error is not monitored while it is still learning its first labels
    warmup_labels: NonNegativeCount = 2_000
    min_background_labels: Count = 2_000
    min_background_frauds: NonNegativeCount = 30
    challenge_every: Count = 100  # labels between two comparisons of the background model with the champion
    # AUC the background model must gain over the champion to replace it
    promotion_margin: Annotated[float, Field(ge=0, lt=1)] = 0.02
    max_background_labels: Count = 20_000  # a background model never promoted by then is discarded
    # ADWIN confidence on the score stream (data drift, reported only)
    score_drift_delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    # A detector's signal counts only when the error rate moved materially: over the latest
    # ``*_window`` labels of its stream it is at least ``min_error_ratio`` times the rate before them
    # and at least ``min_*_rise`` above it. Detectors flag statistically sure changes, and on a
    # stable stream a model's own learning moves its false-alarm rate by a few hundredths of a percent.
    miss_window: Count = 100
    false_alarm_window: Count = 5_000
    min_error_ratio: Annotated[float, Field(ge=1)] = 1.25
    min_miss_rise: Probability = 0.1
    min_false_alarm_rise: Probability = 0.02
    recent_labels: NonNegativeCount = 10_000  # latest labelled feature vectors, a new model's first lessons
    comparison_labels: Count = 5_000  # latest labels on which the background model and the champion compete
    min_change_gap: Duration = 3 * 86_400.0  # event time from one model change to the next
    # A material rise of false alarms is reported as a warning but starts no recovery: on stationary
    # streams the champion's own false-alarm rate swings by whole points as it learns, and models
    # trained anew ranked no better (docs/drift-handling.md).
    false_alarms_recover: bool = False


def build_detector(kind: str) -> base.DriftDetector | base.BinaryDriftDetector:
    """A fresh detector; Page-Hinkley is made one-sided so that only rises count."""
    factories: dict[str, Callable[[], base.DriftDetector | base.BinaryDriftDetector]] = {
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
    """A warning or a drift on one error stream: the detector, and what it saw.

    ``error_rate`` is the rate over all labels since the stream was (re)started; ``rate_before`` and
    ``rate_after`` split them into those before the latest window and the window itself.
    """

    stream: str
    level: str
    error_rate: float
    detector: str = ""
    rate_before: float = 0.0
    rate_after: float = 0.0
    labels_seen: int = 0

    def detail(self) -> dict[str, object]:
        """What triggered the signal, for its audit record."""
        return {
            "stream": self.stream,
            "error_rate": self.error_rate,
            "detector": self.detector,
            "error_rate_before": self.rate_before,
            "error_rate_after": self.rate_after,
            "labels_seen": self.labels_seen,
        }


@dataclass(frozen=True)
class Materiality:
    """How much an error rate must rise, over the latest ``window`` labels, for a signal to count."""

    window: int
    ratio: float
    rise: float

    def holds(self, before: float, after: float) -> bool:
        return after >= before * self.ratio and after - before >= self.rise


class _ErrorStream:
    """One detector on one error bit, with the error rate before and within its latest window."""

    def __init__(self, name: str, kind: str, materiality: Materiality) -> None:
        self.name = name
        self.kind = kind
        self.detector = build_detector(kind)
        self.materiality = materiality
        self.errors = 0
        self.seen = 0
        self._latest: deque[bool] = deque(maxlen=materiality.window)
        self._latest_errors = 0
        self._pending: str | None = None  # a detector's signal not yet confirmed as material
        self._pending_left = 0

    def update(self, error: bool) -> DriftSignal | None:
        """A detector's signal waits, for up to a window of labels, until the rise is material."""
        before = getattr(self.detector, "estimation", None)
        # River types a binary detector's input as bool, though it documents 1/0; ADWIN takes numbers.
        self.detector.update(int(error))  # type: ignore[arg-type]
        self._count(error)
        level = None
        if self.detector.drift_detected:
            after = getattr(self.detector, "estimation", None)
            if before is None or after is None or after > before:  # else the error fell: no drift
                level = DRIFT
        elif getattr(self.detector, "warning_detected", False):
            level = WARNING
        if level is not None and (self._pending is None or level == DRIFT):
            self._pending, self._pending_left = level, self.materiality.window
        return self._confirmed()

    def _count(self, error: bool) -> None:
        latest = self._latest
        if len(latest) == latest.maxlen:
            self._latest_errors -= latest[0]
        latest.append(error)
        self._latest_errors += error
        self.errors += error
        self.seen += 1

    def _confirmed(self) -> DriftSignal | None:
        level = self._pending
        if level is None:
            return None
        self._pending_left -= 1
        if self._pending_left <= 0:
            self._pending = None  # the detector's alarm never showed as a material rise: dropped
        earlier = self.seen - len(self._latest)
        if earlier == 0:
            return None  # nothing to compare the latest labels with yet
        before = (self.errors - self._latest_errors) / earlier
        after = self._latest_errors / len(self._latest)
        if not self.materiality.holds(before, after):
            return None
        self._pending = None
        return DriftSignal(self.name, level, self.errors / self.seen, self.kind, before, after, self.seen)


class ErrorDriftMonitor:
    """Concept drift from labels: misses on frauds and false alarms on legitimate transactions."""

    def __init__(self, config: DriftConfig) -> None:
        ratio = config.min_error_ratio
        self._miss = _ErrorStream(
            MISS, config.miss_detector, Materiality(config.miss_window, ratio, config.min_miss_rise)
        )
        self._false_alarm = _ErrorStream(
            FALSE_ALARM,
            config.false_alarm_detector,
            Materiality(config.false_alarm_window, ratio, config.min_false_alarm_rise),
        )

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
