"""A background model trained beside the one in force, promoted only when it has proven better.

Both models score each new label *before* either learns it (prequential evaluation), so they are
compared on exactly the same unseen examples. The comparison is the exact ROC AUC over the most
recent ``window`` labels: what matters for alerts is how well frauds are ranked, and "recent"
asks which model is better now, not during the drift that hurt the champion. (A log loss was
tried first and misled: Hoeffding trees' leaf probabilities are overconfident, so a young tree
could win on loss while ranking worse.)

>>> from detector.engine.model import FraudModel, ModelConfig
>>> champion = FraudModel(ModelConfig())
>>> challenger = Challenger(FraudModel(ModelConfig()), window=100)
>>> for _ in range(30):
...     for amount, fraud in ((900.0, True), (10.0, False)):
...         challenger.observe({"amount": amount}, fraud, champion.predict_proba_one({"amount": amount}))
>>> challenger_auc, champion_auc = challenger.aucs()
>>> challenger.is_ready(min_labels=20, min_frauds=10), challenger_auc > champion_auc
(True, True)
"""

from __future__ import annotations

from collections import deque

from detector.engine.model import FraudModel
from detector.evaluation import roc_auc


class Challenger:
    """The background model, and both models' scores on the latest labels."""

    def __init__(self, model: FraudModel, window: int) -> None:
        self.model = model
        self.observed = 0  # labels seen since it started, beside the champion
        # (is_fraud, challenger's probability, champion's probability), newest last
        self._recent: deque[tuple[bool, float, float]] = deque(maxlen=window)
        self._recent_frauds = 0

    def observe(self, x: dict[str, float], is_fraud: bool, champion_probability: float) -> None:
        """Score ``x`` with the challenger first, then let it learn."""
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._recent_frauds -= recent[0][0]
        recent.append((is_fraud, self.model.predict_proba_one(x), champion_probability))
        self._recent_frauds += is_fraud
        self.observed += 1
        self.model.learn_one(x, is_fraud)

    @property
    def recent_frauds(self) -> int:
        return self._recent_frauds

    @property
    def recent_labels(self) -> int:
        return len(self._recent)

    def is_ready(self, min_labels: int, min_frauds: int) -> bool:
        """Compared on enough labels since it started, and enough frauds among the recent ones to
        compare rankings (labels it learned before it started, from the buffer, do not count)."""
        return self.observed >= min_labels and self._recent_frauds >= min_frauds

    def aucs(self) -> tuple[float, float]:
        """(challenger, champion) ROC AUC on the recent labels."""
        labels = [fraud for fraud, _, _ in self._recent]
        return (
            roc_auc(labels, [p for _, p, _ in self._recent]),
            roc_auc(labels, [p for _, _, p in self._recent]),
        )
