"""Replay of recorded transactions and labels: the reader is the product's
(:mod:`detector.history.reading`), so what ``fraud-replay`` publishes is exactly what
``fraud-detector backtest`` scores from the same files."""

from detector.history.reading import Replay, ReplayError, ReplayStats, SourceFormat

__all__ = ["Replay", "ReplayError", "ReplayStats", "SourceFormat"]
