"""What a scorer reads shared state from: a replica of the learner's terminal table and champion.

A :class:`SharedView` is built from the learner's versions (:meth:`SharedView.apply`), replaying
each version's terminal changes with the same code the learner used (:meth:`TerminalTable.apply`),
so the replica equals the learner's table at the same version. In one process the learner itself
serves as the view (it has the same attributes, :class:`ReadView`).
"""

from __future__ import annotations

from typing import Protocol

from detector.engine.features import FeatureConfig
from detector.engine.lifecycle import STABLE
from detector.engine.model import FraudModel, ModelConfig
from detector.engine.shared import NO_VERSION, SharedVersion
from detector.engine.snapshots import pickled, unpickled
from detector.engine.terminals import TerminalTable

_SNAPSHOT_MAGIC = b"fraud-view/1\n"


class ReadView(Protocol):
    """The shared state one version holds, as a scorer reads it."""

    @property
    def version(self) -> int: ...
    @property
    def terminals(self) -> TerminalTable: ...
    @property
    def model(self) -> FraudModel: ...
    @property
    def generation(self) -> int: ...
    @property
    def drift_state(self) -> str: ...


class SharedView:
    """A replica of the shared state at :attr:`version`, for the scorers of one process."""

    def __init__(self, features: FeatureConfig, model: ModelConfig) -> None:
        self.version = NO_VERSION
        self.terminals = TerminalTable(features)
        self.model = FraudModel(model)  # the learner's first champion is untrained too
        self.generation = 1
        self.drift_state = STABLE

    def apply(self, version: SharedVersion) -> bool:
        """Catch up with ``version``; False (and nothing changes) if the view already has it."""
        if version.epoch <= self.version:
            return False
        self.terminals.apply(version.terminal_changes)
        if version.model is not None:
            self.model = version.model
        self.generation = version.generation
        self.drift_state = version.drift_state
        self.version = version.epoch
        return True

    def snapshot(self) -> bytes:
        """The whole view as bytes (trusted data: pickle, as the engine's checkpoints)."""
        return pickled(self, _SNAPSHOT_MAGIC)

    @classmethod
    def restore(cls, snapshot: bytes) -> SharedView:
        return unpickled(snapshot, _SNAPSHOT_MAGIC, cls)
