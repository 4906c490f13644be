"""The engine configuration the service runs with: a JSON file, or just the model kind."""

from __future__ import annotations

from pathlib import Path

import orjson

from detector.engine.config import EngineConfig
from detector.engine.model import ModelConfig
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
