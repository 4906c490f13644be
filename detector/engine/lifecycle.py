"""The model in force, its background model and its drift detectors, used as one model.

As River's ``DriftRetrainingClassifier`` does, it wraps the lifecycle of a model in the interface of
one: ``predict_proba_one`` scores with the champion, ``learn_one`` teaches a label to the champion,
and behind that the label's error feeds the drift detectors. A warning or a drift starts a
background model (a :class:`Challenger`) that replaces the champion once it ranks recent labels
better; with ``recovery="reset"`` a drift replaces the champion by an untrained model at once.
Either new model first learns the latest labelled feature vectors (``recent_labels`` of them), so
it starts from recent experience instead of from nothing; and no model change follows the previous
one within ``min_change_gap`` of event time. Why: docs/drift-handling.md.
The scores it hands out feed a data-drift monitor too (``watch_score``), which only reports.
Each new champion starts a new *generation*; each signal and change is an :class:`EngineEvent`,
collected by :meth:`DriftAwareModel.pop_events`.

>>> model = DriftAwareModel(ModelConfig(), DriftConfig(recovery="reset", warmup_labels=0))
>>> for i in range(600):  # frauds caught at first, then all missed
...     model.learn_one({"amount": 1.0}, True, flagged=i < 300, scored_generation=model.generation,
...                     event_time=float(i))
>>> [event.kind for event in model.pop_events()], model.generation
(['drift_detected', 'model_reset'], 2)
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import Any

from detector.engine import outputs
from detector.engine.challenger import Challenger
from detector.engine.drift import (
    DRIFT,
    FALSE_ALARM,
    WARNING,
    DriftConfig,
    DriftSignal,
    ErrorDriftMonitor,
    ScoreDriftMonitor,
)
from detector.engine.model import FraudModel, ModelConfig
from detector.engine.outputs import EngineEvent

STABLE = "stable"
MODEL_CHANGES = (outputs.MODEL_SWAPPED, outputs.MODEL_RESET)


class DriftAwareModel:
    """Champion, challenger, drift state and generation; scores, learns and reports its changes."""

    def __init__(self, model_config: ModelConfig, drift_config: DriftConfig) -> None:
        self.model_config = model_config
        self.drift_config = drift_config
        self.model = FraudModel(model_config)  # the champion: the model that scores
        self.challenger: Challenger | None = None
        self._trigger: dict[str, object] = {}  # the signal that started the challenger
        self.generation = 1
        self.drift_state = STABLE
        self.error_monitor = ErrorDriftMonitor(drift_config)
        self.score_monitor = ScoreDriftMonitor(drift_config.score_drift_delta)
        self._events: list[EngineEvent] = []
        # (feature values in the order of ``_feature_names``, is_fraud) of the latest labels
        self._recent: deque[tuple[array, bool]] = deque(maxlen=drift_config.recent_labels)
        self._feature_names: tuple[str, ...] = ()
        self._last_change = float("-inf")

    @property
    def labels_learned(self) -> int:
        """Labels the champion has learned (a new champion brings its own count)."""
        return self.model.labels_learned

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return self.model.predict_proba_one(x)

    def contributions(self, x: dict[str, float], top_k: int) -> list[tuple[str, float]]:
        return self.model.contributions(x, top_k)

    def watch_score(self, score: float, event_time: float) -> None:
        """Feed a score to the data-drift monitor, which reports a shift but never acts on it."""
        shift = self.score_monitor.update(score)
        if shift is not None:
            self._emit(outputs.SCORE_DRIFT, event_time, mean_before=shift[0], mean_after=shift[1])

    def learn_one(
        self, x: dict[str, float], is_fraud: bool, *, flagged: bool, scored_generation: int, event_time: float
    ) -> None:
        """Learn a label of a transaction scored by generation ``scored_generation`` (``flagged`` if its
        score reached review), at ``event_time``, the label's time."""
        challenger = self.challenger
        if challenger is not None:
            challenger.observe(x, is_fraud, self.model.predict_proba_one(x))
        self.model.learn_one(x, is_fraud)
        self._remember(x, is_fraud)
        drift_config = self.drift_config
        # Errors of an earlier generation say nothing about the model in force now, and a model
        # still learning its first labels has an error curve that falls by design.
        if (
            drift_config.enabled
            and scored_generation == self.generation
            and self.model.labels_learned > drift_config.warmup_labels
        ):
            signal = self.error_monitor.update(is_fraud, flagged)
            if signal is not None:
                self._react(signal, event_time)
        if self.challenger is not None:
            self._settle_challenge(self.challenger, event_time)

    def pop_events(self) -> tuple[EngineEvent, ...]:
        """Drift signals and model changes since the last call, in the order they happened."""
        if not self._events:
            return ()
        events = tuple(self._events)
        self._events.clear()
        return events

    def _react(self, signal: DriftSignal, event_time: float) -> None:
        """A warning starts a background model; a drift resets, or waits for the background model."""
        if signal.stream == FALSE_ALARM and not self.drift_config.false_alarms_recover:
            self._emit(
                outputs.DRIFT_WARNING, event_time, labels_learned=self.model.labels_learned, **signal.detail()
            )
            return
        kind = outputs.DRIFT_DETECTED if signal.level == DRIFT else outputs.DRIFT_WARNING
        if signal.level == WARNING and self.drift_state != STABLE:
            return  # already warned: one event per episode, not one per label
        trigger = signal.detail()
        self._emit(kind, event_time, labels_learned=self.model.labels_learned, **trigger)
        if signal.level == DRIFT and self.drift_config.recovery == "reset":
            if self._may_change(event_time):
                self._replace_model(self.fresh_model(), outputs.MODEL_RESET, event_time, trigger=trigger)
            return
        self.drift_state = signal.level
        if self.challenger is None:
            self.challenger = Challenger(self.fresh_model(), window=self.drift_config.comparison_labels)
            self._trigger = trigger
            self._emit(
                outputs.BACKGROUND_STARTED,
                event_time,
                trigger=signal.level,
                warm_start_labels=self.challenger.model.labels_learned,
            )

    def _settle_challenge(self, challenger: Challenger, event_time: float) -> None:
        """After a drift, promote the background model as soon as it ranks better; drop it when stale.

        A young model often loses at first and overtakes later, so it is compared again every
        ``challenge_every`` labels rather than judged once.
        """
        drift_config = self.drift_config
        observed = challenger.observed
        if (
            self.drift_state == DRIFT
            and observed % drift_config.challenge_every == 0
            and challenger.is_ready(drift_config.min_background_labels, drift_config.min_background_frauds)
            and self._may_change(event_time)
        ):
            challenger_auc, champion_auc = challenger.aucs()
            if challenger_auc > champion_auc + drift_config.promotion_margin:
                self._replace_model(
                    challenger.model,
                    outputs.MODEL_SWAPPED,
                    event_time,
                    background_auc=challenger_auc,
                    champion_auc=champion_auc,
                    compared_labels=challenger.recent_labels,
                    compared_frauds=challenger.recent_frauds,
                    trigger=self._trigger,
                )
                return
        if observed >= drift_config.max_background_labels:
            reason = "not_better" if self.drift_state == DRIFT else "no_drift_confirmed"
            self._emit(outputs.BACKGROUND_DISCARDED, event_time, reason=reason)
            self._stabilise()

    def _replace_model(self, model: FraudModel, kind: str, event_time: float, **detail: Any) -> None:
        retired_labels = self.model.labels_learned
        self.model = model
        self.generation += 1
        self._last_change = event_time
        self._stabilise()
        self._emit(
            kind, event_time, labels_learned=model.labels_learned, retired_labels=retired_labels, **detail
        )

    def _may_change(self, event_time: float) -> bool:
        """A model change so soon after the last one would judge the new model on too little."""
        return event_time - self._last_change >= self.drift_config.min_change_gap

    def fresh_model(self) -> FraudModel:
        """An untrained model that has then learned the latest labels, oldest first: what a
        background model or a reset starts from."""
        model = FraudModel(self.model_config)
        names = self._feature_names
        for values, is_fraud in self._recent:
            model.learn_one(dict(zip(names, values, strict=True)), is_fraud)
        return model

    def __getstate__(self) -> dict[str, Any]:
        """The recent labels as two bytes objects (vectors, labels): one array each, 10,000 of them,
        were most of the objects a checkpoint pickled (docs/state.md)."""
        state = dict(self.__dict__)
        recent = self._recent
        state["_recent"] = (
            recent.maxlen,
            b"".join(values.tobytes() for values, _ in recent),
            bytes(is_fraud for _, is_fraud in recent),
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        packed = state["_recent"]
        if not isinstance(packed, deque):  # else pickled label by label, as before
            maxlen, vectors, labels = packed
            flat, width = array("d"), len(state["_feature_names"])
            flat.frombytes(vectors)
            state["_recent"] = deque(
                ((flat[i * width : (i + 1) * width], bool(label)) for i, label in enumerate(labels)),
                maxlen=maxlen,
            )
        self.__dict__.update(state)

    def _remember(self, x: dict[str, float], is_fraud: bool) -> None:
        if self._recent.maxlen == 0:
            return
        if len(x) != len(self._feature_names):
            self._feature_names = tuple(x)
            self._recent.clear()  # vectors of another shape cannot be replayed as these
        self._recent.append((array("d", x.values()), is_fraud))

    def _stabilise(self) -> None:
        """No background model and fresh error detectors: the state after a change or a false alarm."""
        self.challenger = None
        self.drift_state = STABLE
        self.error_monitor = ErrorDriftMonitor(self.drift_config)

    def _emit(self, kind: str, event_time: float, **detail: Any) -> None:
        self._events.append(EngineEvent(kind, event_time, self.generation, detail))
