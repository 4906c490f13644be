"""The terminal table: each terminal's activity windows and label-derived risk windows.

Terminal state is shared by every partition (a compromised terminal is hit by cards of all of
them), so one :class:`~detector.engine.learner.SharedLearner` writes it and every scorer reads a
replica. Both sides change it only through :meth:`TerminalTable.apply`, with the same ordered
:class:`TerminalChange` list, so a replica equals the learner's table. Reads never change it
(:meth:`SlidingWindows.peek`), so scorers reading it in any interleaving see the same values;
windows are trimmed when changes are applied: at the end of an epoch, once event time has moved
a bucket (the narrowest) since the last trim, the terminals changed since are trimmed to it.

>>> from detector.engine.features import FeatureConfig
>>> table = TerminalTable(FeatureConfig())
>>> table.apply([TerminalChange(0, "term-1", 10.0, ACTIVITY, 40.0),
...              TerminalChange(0, "term-1", 20.0, LABEL, 1.0)])
>>> features = {}; table.add_features(features, "term-1", 30.0)
>>> features["terminal_count_1h"], features["terminal_risk_7d"]
(1.0, 1.0)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from detector.engine.expiring import IN_MEMORY, ExpiringStore, StateStores
from detector.engine.features import MIN_MEAN_AMOUNT, FeatureConfig, window_name
from detector.engine.windows import SlidingWindows

_SIZE = struct.Struct("<I")
ACTIVITY, LABEL = 0, 1  # a transaction at the terminal (value: amount); a label (value: is_fraud)


class TerminalChange(NamedTuple):
    """One change to one terminal, in the order the learner applied it."""

    epoch: int
    terminal_id: str
    event_time: float
    kind: int
    value: float


class TerminalState:
    __slots__ = ("labels", "windows")

    def __init__(self, config: FeatureConfig) -> None:
        self.windows = SlidingWindows(config.terminal_windows, config.resolution)
        # Each labelled transaction adds is_fraud: count = labels known, total = frauds known.
        self.labels = SlidingWindows(config.risk_windows, config.resolution)


def _terminal(config: FeatureConfig, windows: bytes, labels: bytes) -> TerminalState:
    terminal = TerminalState.__new__(TerminalState)
    terminal.windows = SlidingWindows.from_bytes(config.terminal_windows, config.resolution, windows)
    terminal.labels = SlidingWindows.from_bytes(config.risk_windows, config.resolution, labels)
    return terminal


@dataclass(frozen=True)
class TerminalCodec:
    """A terminal's state as bytes, for state on disk: the numbers of its two sets of windows."""

    config: FeatureConfig

    def encode(self, terminal: TerminalState) -> bytes:
        windows = terminal.windows.to_bytes()
        return _SIZE.pack(len(windows)) + windows + terminal.labels.to_bytes()

    def decode(self, data: bytes) -> TerminalState:
        (size,) = _SIZE.unpack_from(data)
        start = _SIZE.size
        return _terminal(self.config, data[start : start + size], data[start + size :])


class TerminalTable:
    """Terminal activity over ``terminal_windows`` and fraud rates over ``risk_windows``, bounded."""

    def __init__(self, config: FeatureConfig, stores: StateStores = IN_MEMORY) -> None:
        self.config = config
        self.terminals = stores.expiring(
            "terminals", config.entity_ttl, config.max_terminals, TerminalCodec(config)
        )
        self._activity_names = [f"terminal_count_{window_name(w)}" for w in config.terminal_windows]
        self._risk_names = [
            (f"terminal_risk_{window_name(w)}", f"terminal_frauds_{window_name(w)}")
            for w in config.risk_windows
        ]
        self._no_activity = [(0, 0.0, 0.0)] * len(config.terminal_windows)
        # The amount against the terminal's mean over its longest window (opt-in, docs/models.md).
        longest = config.terminal_windows.index(max(config.terminal_windows))
        self._amount_ratio = (
            (longest, f"terminal_amount_ratio_{window_name(config.terminal_windows[longest])}")
            if config.terminal_amount_ratio
            else None
        )
        self._no_risk = [(0, 0.0, 0.0)] * len(config.risk_windows)
        self._trim_every = min(config.terminal_windows + config.risk_windows) / config.resolution
        self._next_trim = float("-inf")
        self._untrimmed: set[str] = set()  # keys: a store on disk may hand out another copy later

    def __len__(self) -> int:
        return len(self.terminals)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as the numbers of each terminal in one bytes object: object by object, 10,000
        terminals took 121 ms of every checkpoint's pause (docs/state.md)."""
        state = dict(self.__dict__)
        store = self.terminals
        if not isinstance(store, ExpiringStore):  # on disk: pickled as a reference to its store
            return state
        next_sweep, entries = store.export()
        state["terminals"] = (
            (store.ttl, store.max_entries, store.evicted_for_age, store.evicted_for_size, next_sweep),
            [
                (key, touched, t.windows.to_bytes(), t.labels.to_bytes())
                for key, (touched, t) in entries.items()
            ],
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_untrimmed"] = set(state["_untrimmed"])  # also from the former dict of terminals by key
        packed = state["terminals"]
        if not isinstance(packed, tuple):  # a store, pickled object by object or on disk
            self.__dict__.update(state)
            return
        (ttl, max_entries, evicted_for_age, evicted_for_size, next_sweep), entries = packed
        config: FeatureConfig = state["config"]
        store = ExpiringStore[TerminalState].restored(
            ttl,
            max_entries,
            next_sweep,
            ((key, touched, _terminal(config, windows, labels)) for key, touched, windows, labels in entries),
        )
        store.evicted_for_age, store.evicted_for_size = evicted_for_age, evicted_for_size
        self.__dict__.update(state)
        self.terminals = store

    def add_features(self, features: dict[str, float], terminal_id: str, event_time: float) -> None:
        """Add the terminal's features at ``event_time`` to ``features``, without changing the table."""
        terminal = self.terminals.get(terminal_id)
        activity = terminal.windows.peek(event_time) if terminal else self._no_activity
        for name, (count, _, _) in zip(self._activity_names, activity, strict=True):
            features[name] = float(count)
        if self._amount_ratio is not None:
            index, name = self._amount_ratio
            count, total, _ = activity[index]
            features[name] = features["amount"] / max(total / count, MIN_MEAN_AMOUNT) if count else 1.0
        risk = terminal.labels.peek(event_time) if terminal else self._no_risk
        for (risk_name, frauds_name), (labelled, frauds, _) in zip(self._risk_names, risk, strict=True):
            features[risk_name] = frauds / labelled if labelled else 0.0
            features[frauds_name] = frauds

    def apply(self, changes: Iterable[TerminalChange]) -> None:
        """Apply ``changes`` in order, trimming windows at the end of epochs (see above)."""
        untrimmed, terminals, config = self._untrimmed, self.terminals, self.config
        epoch, latest = None, float("-inf")
        # Unpacked, not read by attribute: this runs for every change in the learner and every view.
        for change_epoch, terminal_id, event_time, kind, value in changes:
            if change_epoch != epoch:
                self._trim(latest)
                epoch, latest = change_epoch, float("-inf")
            terminal = terminals.get(terminal_id) or TerminalState(config)
            (terminal.windows if kind == ACTIVITY else terminal.labels).add(event_time, value)
            terminals.put(terminal_id, terminal, event_time)  # touched: put back, for a store on disk
            terminals.evict(event_time)
            untrimmed.add(terminal_id)
            latest = max(latest, event_time)
        self._trim(latest)

    def _trim(self, now: float) -> None:
        """Expire what left the changed terminals' windows by ``now`` (reads skip it in any case)."""
        if now < self._next_trim:
            return
        self._next_trim = now + self._trim_every
        terminals = self.terminals
        for terminal_id in self._untrimmed:
            terminal = terminals.get(terminal_id)
            if terminal is not None:  # else evicted since
                terminal.windows.trim(now)
                terminal.labels.trim(now)
                terminals.update(terminal_id, terminal)
        self._untrimmed.clear()
