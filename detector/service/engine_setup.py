"""The engine configuration the service runs with (a JSON file, or just the model kind), and the
engines its partitions hold: a whole engine each, or scorers of one shared model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine, check_state_shaping
from detector.engine.expiring import IN_MEMORY, StateStores
from detector.engine.model import ModelConfig
from detector.engine.scorer import Scorer
from detector.engine.snapshots import pickled, unpickled
from detector.engine.view import ReadView
from detector.service.settings import ServiceSettings, SettingsError


def engine_config_for(settings: ServiceSettings) -> EngineConfig:
    """The validated engine config; a file that cannot be read, parsed or used is a SettingsError."""
    if settings.engine_config:
        path = settings.engine_config
        try:
            return EngineConfig.from_dict(orjson.loads(Path(path).read_bytes()))
        except OSError as error:
            raise SettingsError(f"FRAUD_ENGINE_CONFIG {path!r}: cannot read: {error.strerror}") from None
        except orjson.JSONDecodeError as error:
            raise SettingsError(f"FRAUD_ENGINE_CONFIG {path!r}: not JSON: {error}") from None
        except ValueError as error:
            raise SettingsError(f"FRAUD_ENGINE_CONFIG {path!r}: {error}") from None
    return EngineConfig(model=ModelConfig(kind=settings.model))


_SCORER_MAGIC = b"fraud-scorer/1\n"


class PartitionEngines:
    """Makes, checkpoints and restores the engine of a partition: a :class:`DetectionEngine` (its
    own model) or, when ``shared``, a :class:`Scorer` of the shared model.

    ``restore`` raises ValueError for a snapshot that cannot serve (damaged, or of the other kind),
    and ``reconfigure`` for one built with other learned-state settings: the partition is then
    rebuilt from its input.
    """

    def __init__(self, config: EngineConfig, shared: bool) -> None:
        self.config = config
        self.shared = shared

    def new(self, partition: int, stores: StateStores = IN_MEMORY) -> DetectionEngine | Scorer:
        if self.shared:
            return Scorer(self.config, partition, stores)
        return DetectionEngine(self.config, stores)

    def restore(
        self, snapshot: bytes, partition: int, stores: StateStores = IN_MEMORY
    ) -> DetectionEngine | Scorer:
        if not self.shared:
            return DetectionEngine.restore(snapshot, stores)
        scorer = unpickled(snapshot, _SCORER_MAGIC, Scorer, stores)
        if scorer.partition != partition:
            raise ValueError(f"the snapshot holds the scorer of partition {scorer.partition}")
        return scorer

    def reconfigure(self, engine: DetectionEngine | Scorer) -> None:
        if isinstance(engine, DetectionEngine):
            engine.reconfigure(self.config)
            return
        check_state_shaping(engine.config, self.config)
        engine.config = self.config


def engine_snapshot(engine: DetectionEngine | Scorer, stores: StateStores = IN_MEMORY) -> bytes:
    """A partition's engine as bytes, for its checkpoint; what ``stores`` keeps is referred to."""
    if isinstance(engine, DetectionEngine):
        return engine.snapshot(stores)
    return pickled(engine, _SCORER_MAGIC, stores)


def queued_labels(engine: DetectionEngine | Scorer) -> int:
    return engine.queued_labels if isinstance(engine, DetectionEngine) else len(engine.label_queue)


def engine_gauges(engine: DetectionEngine | Scorer, view: ReadView | None) -> dict[str, Any]:
    """State sizes and the model in force, for metrics: a scorer's model is the shared view's."""
    if isinstance(engine, DetectionEngine):
        return engine.gauges()
    assert view is not None, "a scorer's partitions share the view"
    return {
        "cards": len(engine.extractor.cards),
        "terminals": len(view.terminals),
        "pending_scores": len(engine.index),
        "queued_labels": queued_labels(engine),
        "model_generation": view.generation,
        "labels_learned": view.model.labels_learned,
    }
