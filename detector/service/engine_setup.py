"""The engine configuration the service runs with: a JSON file, or just the model kind."""

from __future__ import annotations

from pathlib import Path

import orjson

from detector.engine.config import EngineConfig
from detector.engine.model import ModelConfig
from detector.service.settings import ServiceSettings, SettingsError


def engine_config_for(settings: ServiceSettings) -> EngineConfig:
    if settings.engine_config:
        try:
            return EngineConfig.from_dict(orjson.loads(Path(settings.engine_config).read_bytes()))
        except (OSError, orjson.JSONDecodeError, ValueError, TypeError) as error:
            raise SettingsError(f"FRAUD_ENGINE_CONFIG {settings.engine_config!r}: {error}") from error
    return EngineConfig(model=ModelConfig(kind=settings.model))
