"""What scorers and the learner exchange: shared updates, epoch close marks and shared versions.

Shared learning (docs/shared-learning.md) splits the engine in two: each input partition's
:class:`~detector.engine.scorer.Scorer` keeps card state and scores; one
:class:`~detector.engine.learner.SharedLearner` learns the model and the terminal table from every
partition's updates, one event-time *epoch* (``SharingConfig.epoch`` seconds) at a time, and
publishes each applied epoch as a :class:`SharedVersion`. A transaction at time ``t`` is scored
with version ``epoch_of(t) - 1``: never newer (no label from after its time), never older.

>>> epoch_of(119.0, 60.0), epoch_of(120.0, 60.0)
(1, 2)
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from pydantic.dataclasses import dataclass as validated_dataclass

from detector.engine.outputs import EngineEvent
from detector.validation import CONFIG_RULES, PositiveDuration

if TYPE_CHECKING:
    from detector.engine.model import FraudModel
    from detector.engine.terminals import TerminalChange

NO_VERSION = -1  # before the first epoch is applied (real event times have epochs far above it)


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class SharingConfig:
    """How stale the shared state may be: a transaction sees every update of epochs before its own."""

    epoch: PositiveDuration = 60.0


def epoch_of(event_time: float, epoch_seconds: float) -> int:
    """The epoch an event time falls in."""
    return math.floor(event_time / epoch_seconds)


@final  # exact types: updates are told apart by ``type(update) is``
@dataclass(frozen=True, slots=True)
class Scored:
    """A transaction as scored: the learner keeps its vector for its label and counts it at its terminal."""

    epoch: int
    transaction_id: str
    customer_id: str
    terminal_id: str
    event_time: float
    amount: float
    score: float
    flagged: bool
    generation: int
    features: array  # array('d') in the extractor's name order


@final
@dataclass(frozen=True, slots=True)
class Labelled:
    """A validated label, released once its partition's watermark passed it."""

    epoch: int
    transaction_id: str
    customer_id: str
    is_fraud: bool
    event_time: float


@final
@dataclass(frozen=True, slots=True)
class EpochClosed:
    """Partition ``partition`` emits nothing more for epochs <= ``epoch``.

    ``idle``: the partition is silent; the learner stops waiting for it until it sends again
    (decisions stay deterministic only while no partition idles).
    """

    partition: int
    epoch: int
    idle: bool = False


SharedUpdate = Scored | Labelled | EpochClosed

_SCORED, _LABELLED = 0, 1  # a transaction's label may carry its time: the transaction goes first


def canonical_key(update: Scored | Labelled) -> tuple[float, int, str, str]:
    """The order updates of one epoch are applied in, whatever the partition count and arrival order."""
    kind = _SCORED if type(update) is Scored else _LABELLED
    return (update.event_time, kind, update.transaction_id, update.customer_id)


@dataclass(frozen=True, slots=True)
class SharedVersion:
    """Every update of epochs <= ``epoch`` applied: what a view needs to catch up from the previous one.

    ``model`` is the champion when it changed since the previous version (None otherwise);
    ``events`` are the drift and model events of the epochs applied, in order.
    """

    epoch: int
    terminal_changes: tuple[TerminalChange, ...]
    model: FraudModel | None
    generation: int
    drift_state: str
    events: tuple[EngineEvent, ...]
