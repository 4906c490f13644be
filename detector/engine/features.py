"""Online features in event time, per card and per terminal, with bounded state.

The features of a transaction describe only what was known strictly before it: the card's and the
terminal's earlier activity, and the labels whose timestamps have passed (the engine applies a label
only once event time reaches it). ``transform_one`` reads, ``learn_one`` records the transaction,
and ``learn_label`` records a label, mirroring River's vocabulary. Terminal state is shared by all
partitions, so it lives in a :class:`~detector.engine.terminals.TerminalTable` that
``transform_one`` reads and the learner writes (docs/shared-learning.md).

>>> from detector.engine.records import Transaction
>>> from detector.engine.terminals import TerminalTable
>>> extractor, terminals = FeatureExtractor(FeatureConfig()), TerminalTable(FeatureConfig())
>>> tx = Transaction("t1", 1_700_000_000.0, "card-1", "term-1", 40.0)
>>> extractor.transform_one(tx, terminals)["card_count_1d"]
0.0
>>> extractor.learn_one(tx)
>>> later = Transaction("t2", 1_700_000_060.0, "card-1", "term-2", 60.0)
>>> extractor.transform_one(later, terminals)["card_count_1d"]
1.0
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass as validated_dataclass

from detector.engine.expiring import IN_MEMORY, ExpiringKeys, StateStores
from detector.engine.records import MAX_AMOUNT, Transaction
from detector.engine.windows import SlidingWindows
from detector.validation import CONFIG_RULES, Count, PositiveDuration

if TYPE_CHECKING:
    from detector.engine.terminals import TerminalTable

MINUTE = 60.0
HOUR = 3600.0
MIN_MEAN_AMOUNT = 0.01  # floor of a mean amount used as a divisor: a card of tiny amounts must not give inf
DAY = 86400.0
_NIGHT_HOURS = 6  # 00:00-05:59 UTC counts as night
# 1970-01-01 was a Thursday: day number + 3 gives Monday = 0.
_EPOCH_WEEKDAY_SHIFT = 3


_Windows = Annotated[tuple[PositiveDuration, ...], Field(min_length=1)]


@validated_dataclass(frozen=True, config=CONFIG_RULES)
class FeatureConfig:
    """Which windows to compute, how finely, and the bounds on per-entity state (checked when built)."""

    # 10 minutes for the bursts of card testing (docs/models.md); the longest is the card's profile.
    card_windows: _Windows = (10 * MINUTE, HOUR, DAY, 7 * DAY, 30 * DAY)
    terminal_windows: _Windows = (HOUR, DAY, 7 * DAY)
    risk_windows: _Windows = (7 * DAY, 30 * DAY)
    resolution: Count = 24
    max_cards: Count = 2_000_000
    max_terminals: Count = 500_000
    max_terminals_per_card: Count = 64
    extra_numeric: tuple[str, ...] = ()
    # Opt-in features (docs/models.md measures them): how long since the card last paid at this
    # terminal, and the amount against the terminal's mean over its longest window.
    card_terminal_recency: bool = False
    terminal_amount_ratio: bool = False

    @property
    def entity_ttl(self) -> float:
        """An entity idle for longer than every window has nothing left to remember."""
        return max(self.card_windows + self.terminal_windows + self.risk_windows)


def window_name(seconds: float) -> str:
    """``86400.0`` -> ``"1d"``: short, stable names for feature keys and reason codes."""
    if seconds % DAY == 0:
        return f"{int(seconds // DAY)}d"
    if seconds % HOUR == 0:
        return f"{int(seconds // HOUR)}h"
    if seconds % MINUTE == 0:
        return f"{int(seconds // MINUTE)}m"
    return f"{int(seconds)}s"


class _CardState:
    """What one card's features need. There is one per active card, so it holds nothing unused: the
    fraud window, which most cards never need, exists only once a fraud label arrives."""

    __slots__ = ("frauds", "last_time", "terminals", "windows")

    def __init__(self, config: FeatureConfig) -> None:
        self.windows = SlidingWindows(config.card_windows, config.resolution)
        self.frauds: SlidingWindows | None = None  # created by the card's first fraud label
        self.last_time: float | None = None
        self.terminals = ExpiringKeys(ttl=max(config.card_windows), max_entries=config.max_terminals_per_card)


_CARD_HEAD = struct.Struct("<ddIiI")  # last time (NaN: none), terminals' next sweep, sizes of the rest


@dataclass(frozen=True)
class CardCodec:
    """A card's state as bytes, for state on disk: its windows' numbers and its terminals."""

    config: FeatureConfig

    def encode(self, card: _CardState) -> bytes:
        windows = card.windows.to_bytes()
        frauds = b"" if card.frauds is None else card.frauds.to_bytes()
        next_sweep, touched = card.terminals.export()
        ids = [key.encode() for key in touched]
        head = _CARD_HEAD.pack(
            math.nan if card.last_time is None else card.last_time,
            next_sweep,
            len(windows),
            -1 if card.frauds is None else len(frauds),
            len(ids),
        )
        times, sizes = array("d", touched.values()), array("I", map(len, ids))
        return b"".join((head, windows, frauds, times.tobytes(), sizes.tobytes(), *ids))

    def decode(self, data: bytes) -> _CardState:
        config = self.config
        last_time, next_sweep, window_bytes, fraud_bytes, terminals = _CARD_HEAD.unpack_from(data)
        card = _CardState.__new__(_CardState)
        card.last_time = None if math.isnan(last_time) else last_time
        at = _CARD_HEAD.size
        card.windows = SlidingWindows.from_bytes(
            config.card_windows, config.resolution, data[at : at + window_bytes]
        )
        at += window_bytes
        card.frauds = None
        if fraud_bytes >= 0:
            card.frauds = SlidingWindows.from_bytes(
                (max(config.risk_windows),), config.resolution, data[at : at + fraud_bytes]
            )
            at += fraud_bytes
        times, sizes = array("d"), array("I")
        times.frombytes(data[at : at + 8 * terminals])
        at += 8 * terminals
        sizes.frombytes(data[at : at + 4 * terminals])
        at += 4 * terminals
        touched = {}
        for size, time in zip(sizes, times, strict=True):
            touched[sys.intern(data[at : at + size].decode())] = time
            at += size
        card.terminals = ExpiringKeys.restored(
            max(config.card_windows), config.max_terminals_per_card, next_sweep, touched
        )
        return card


class FeatureExtractor:
    """Per-card velocity and amount profile, calendar, and the terminal's features from a shared table."""

    def __init__(self, config: FeatureConfig, stores: StateStores = IN_MEMORY) -> None:
        self.config = config
        self.cards = stores.expiring("cards", config.entity_ttl, config.max_cards, CardCodec(config))
        card_names = [window_name(w) for w in config.card_windows]
        # Feature names built once: (count name, mean amount name) per card window.
        self._card_keys = [(f"card_count_{name}", f"card_mean_amount_{name}") for name in card_names]
        # The longest window is the card's profile, whatever order the windows are configured in.
        self._profile = config.card_windows.index(max(config.card_windows))
        profile_name = card_names[self._profile]
        self._ratio_key, self._zscore_key = (f"card_amount_{k}_{profile_name}" for k in ("ratio", "zscore"))
        self._recency = config.card_terminal_recency
        self._extra_keys = [(name, f"extra_{name}") for name in config.extra_numeric]
        self._no_history = math.log1p(config.entity_ttl)
        # What the windows of an entity not seen yet would read.
        self._no_card = [(0, 0.0, 0.0)] * len(config.card_windows)
        self.names: tuple[str, ...] = tuple(self._empty_features())

    def transform_one(self, tx: Transaction, terminals: TerminalTable) -> dict[str, float]:
        """The feature vector of ``tx`` from state before it, in the fixed order of :attr:`names`."""
        t = tx.event_time
        amount = tx.amount
        features: dict[str, float] = {"amount": amount, "log_amount": math.log1p(amount)}

        card = self.cards.get(tx.customer_id)
        card_totals = card.windows.read(t) if card else self._no_card
        for (count_key, mean_key), (count, total, _) in zip(self._card_keys, card_totals, strict=True):
            features[count_key] = float(count)
            features[mean_key] = total / count if count else 0.0
        count, total, total_sq = card_totals[self._profile]
        # How unusual the amount is for this card: ratio to its mean and z-score over its longest window.
        if count == 0:
            features[self._ratio_key], features[self._zscore_key] = 1.0, 0.0
        else:
            mean = total / count
            variance = max(total_sq / count - mean * mean, 0.0)
            spread = math.sqrt(variance) + max(mean * 0.1, 1.0)  # a floor: constant amounts stay sane
            features[self._ratio_key] = amount / max(mean, MIN_MEAN_AMOUNT)
            features[self._zscore_key] = (amount - mean) / spread
        if card is None or card.last_time is None:
            features["card_log_seconds_since_last"] = self._no_history
            features["card_new_terminal"] = 1.0
            features["card_known_frauds"] = 0.0
            if self._recency:
                features["card_log_seconds_since_terminal"] = self._no_history
        else:
            features["card_log_seconds_since_last"] = math.log1p(max(t - card.last_time, 0.0))
            features["card_new_terminal"] = 0.0 if tx.terminal_id in card.terminals else 1.0
            features["card_known_frauds"] = card.frauds.read(t)[0][1] if card.frauds is not None else 0.0
            if self._recency:
                last_here = card.terminals.last_touch(tx.terminal_id)
                features["card_log_seconds_since_terminal"] = (
                    self._no_history if last_here is None else math.log1p(max(t - last_here, 0.0))
                )

        terminals.add_features(features, tx.terminal_id, t)

        # Calendar, in UTC: hour of day on a circle (23:00 is next to 00:00), night, weekend.
        hour = (t % DAY) / HOUR
        angle = 2.0 * math.pi * hour / 24.0
        features["hour_sin"] = math.sin(angle)
        features["hour_cos"] = math.cos(angle)
        features["is_night"] = 1.0 if hour < _NIGHT_HOURS else 0.0
        features["is_weekend"] = 1.0 if (int(t // DAY) + _EPOCH_WEEKDAY_SHIFT) % 7 >= 5 else 0.0
        for name, key in self._extra_keys:
            features[key] = _finite_number(tx.extras.get(name))
        return features

    def learn_one(self, tx: Transaction) -> None:
        """Record ``tx`` in its card's state; sweeps out idle cards."""
        t = tx.event_time
        card = self.cards.get(tx.customer_id) or _CardState(self.config)
        card.windows.add(t, tx.amount)
        card.last_time = t if card.last_time is None else max(card.last_time, t)
        card.terminals.add(sys.intern(tx.terminal_id), t)  # one string per terminal, not per card
        card.terminals.evict(t)
        self.cards.put(tx.customer_id, card, t)
        self.cards.evict(t)

    def learn_label(self, customer_id: str, is_fraud: bool, known_at: float) -> None:
        """Record that a transaction of this card is now known (not) to be fraud."""
        if is_fraud:
            card = self.cards.get(customer_id) or _CardState(self.config)
            if card.frauds is None:
                card.frauds = SlidingWindows((max(self.config.risk_windows),), self.config.resolution)
            card.frauds.add(known_at, 1.0)
            self.cards.put(customer_id, card, known_at)

    def _empty_features(self) -> dict[str, float]:
        from detector.engine.terminals import TerminalTable

        return self.transform_one(Transaction("", 0.0, "", "", 0.0), TerminalTable(self.config))


def _finite_number(value: object) -> float:
    """A numeric extra as a feature; anything else, or beyond the amounts' bound, counts as missing (0).

    The bound keeps squares and sums finite in every model (1e308 overflowed a Hoeffding tree's
    Gaussian estimator, and turned logistic regression's weights into NaN for good).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if -MAX_AMOUNT <= number <= MAX_AMOUNT else 0.0
