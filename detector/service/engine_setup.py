"""The engine configuration the service runs with (a JSON file, or just the model kind), and the
engines its partitions hold: a whole engine each, or scorers of one shared model."""

from __future__ import annotations

from pathlib import Path

import orjson

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.model import ModelConfig
from detector.engine.scorer import Scorer
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


class PartitionEngines:
    """Makes the engine of a partition, new or from a checkpoint: a :class:`DetectionEngine` (its
    own model) or, when ``shared``, a :class:`Scorer` of the shared model.

    ``restore`` raises ValueError for a snapshot that cannot serve (damaged, or of the other kind):
    the partition is then rebuilt from its input.
    """

    def __init__(self, config: EngineConfig, shared: bool) -> None:
        self.config = config
        self.shared = shared

    def new(self, partition: int) -> DetectionEngine | Scorer:
        return Scorer(self.config, partition) if self.shared else DetectionEngine(self.config)

    def restore(self, snapshot: bytes, partition: int) -> DetectionEngine | Scorer:
        engine = Scorer.restore(snapshot) if self.shared else DetectionEngine.restore(snapshot)
        if self.shared and engine.partition != partition:
            raise ValueError(f"the checkpoint is of partition {engine.partition}'s scorer")
        return engine
