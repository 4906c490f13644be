"""What the metrics need to know of every transaction, kept compact for long histories.

The engines' state is bounded as in the service; this is the one thing a backtest keeps per
transaction: its time, card, amount and final label (the last one seen wins, as a corrected
chargeback would), about 100 bytes each, shared by every configuration.
"""

from __future__ import annotations

from array import array

import numpy as np

from detector.engine.records import Label, Transaction

UNLABELLED = -1


class GroundTruth:
    """Transactions in input order (their index is each configuration's index too) and their labels."""

    def __init__(self) -> None:
        self.times = array("d")
        self.amounts = array("d")
        self.cards = array("q")
        self.labels = array("b")
        self._by_id: dict[str, int] = {}
        self._card_ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.times)

    def add(self, transaction: Transaction) -> int:
        """Record a transaction; its index. A repeated id takes the labels from then on."""
        index = len(self.times)
        self._by_id[transaction.transaction_id] = index
        self.times.append(transaction.event_time)
        self.amounts.append(transaction.amount)
        self.cards.append(self._card_ids.setdefault(transaction.customer_id, len(self._card_ids)))
        self.labels.append(UNLABELLED)
        return index

    def label(self, label: Label) -> None:
        index = self._by_id.get(label.transaction_id)
        if index is not None:
            self.labels[index] = label.is_fraud

    def columns(self) -> dict[str, np.ndarray]:
        """The arrays as numpy views, for the metrics."""
        return {
            "times": np.frombuffer(self.times, dtype=np.float64),
            "amounts": np.frombuffer(self.amounts, dtype=np.float64),
            "cards": np.frombuffer(self.cards, dtype=np.int64),
            "labels": np.frombuffer(self.labels, dtype=np.int8),
        }
