"""What an analyst acts on: the frauds the score missed, how each reason code and rule performed,
the day's alerts to review first, and which score-drift events are large enough to matter.

"Missed" means scored below the review threshold in force for that decision, whether or not a
rule still raised an alert (the page says how many did). Precision counts labelled transactions
only, as everywhere in the report.
"""

from __future__ import annotations

import shlex
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from detector.audit.collection import AuditCollection, ModelEvent
from detector.audit.quality import FRAUD, LEGITIMATE, Joined, day_date
from detector.engine.outputs import SCORE_DRIFT

STANDOUT_FEATURES = 3
LABEL_NAMES = {FRAUD: "fraud", LEGITIMATE: "legitimate"}


@dataclass(frozen=True)
class Case:
    """One decision as the tables show it; ``features``: (name, value, z-score) that stood out."""

    transaction_id: str
    card: str
    time: float
    amount: float
    score: float
    decision: str
    label: str
    reason_codes: tuple[str, ...]
    features: tuple[tuple[str, float, float], ...]


def case(collection: AuditCollection, joined: Joined, row: int) -> Case:
    transaction = collection.transaction_ids[row]
    return Case(
        transaction_id=transaction,
        card=collection.cards[row],
        time=collection.times[row],
        amount=collection.amounts[row],
        score=collection.scores[row],
        decision=collection.outcomes[row],
        label=LABEL_NAMES.get(int(joined.labels[row]), "unlabelled"),
        reason_codes=collection.reason_codes[row],
        features=standout_features(collection, transaction),
    )


def standout_features(
    collection: AuditCollection, transaction_id: str
) -> tuple[tuple[str, float, float], ...]:
    """The kept features of a transaction furthest from the mean of every decision, in z-scores."""
    features = collection.features.get(transaction_id, {})
    scored = [(name, value, collection.profile.zscore(name, value)) for name, value in features.items()]
    scored.sort(key=lambda item: -abs(item[2]))
    return tuple(item for item in scored[:STANDOUT_FEATURES] if item[2] != 0.0)


@dataclass(frozen=True)
class MissedFraud:
    frauds: int
    fraud_amount: float
    missed: int  # scored below the review threshold
    missed_amount: float
    rule_alerts: int  # of the missed, alerted by a rule all the same
    cases: list[Case]  # the costliest missed frauds that nothing alerted on, then the others


def missed_fraud(collection: AuditCollection, joined: Joined, top: int) -> MissedFraud:
    fraud = joined.labels == FRAUD
    missed = fraud & (joined.scores < joined.review_thresholds)
    rows = np.flatnonzero(missed)
    costliest = rows[np.lexsort((-joined.amounts[rows], joined.alerts[rows]))][:top]
    return MissedFraud(
        frauds=int(fraud.sum()),
        fraud_amount=float(joined.amounts[fraud].sum()),
        missed=int(missed.sum()),
        missed_amount=float(joined.amounts[missed].sum()),
        rule_alerts=int((missed & joined.alerts).sum()),
        cases=[case(collection, joined, int(row)) for row in costliest],
    )


@dataclass(frozen=True)
class CodeStats:
    """How often one reason code fired, and how often on a fraud."""

    code: str
    fired: int
    labelled: int
    frauds: int
    frauds_below_review: int  # frauds it flagged that the score alone did not

    @property
    def precision(self) -> float:
        return self.frauds / self.labelled if self.labelled else float("nan")


def reason_stats(collection: AuditCollection, joined: Joined) -> list[CodeStats]:
    """Every reason code that fired, most frequent first."""
    counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    below = joined.scores < joined.review_thresholds
    for row, codes in enumerate(collection.reason_codes):
        label = joined.labels[row]
        for code in codes:
            totals = counts[code]
            totals[0] += 1
            if label != -1:
                totals[1] += 1
                if label == FRAUD:
                    totals[2] += 1
                    totals[3] += int(below[row])
    stats = [CodeStats(code, *totals) for code, totals in counts.items()]
    return sorted(stats, key=lambda s: (-s.fired, s.code))


def review_queue(
    collection: AuditCollection, joined: Joined, per_day: int, days: int
) -> list[tuple[date, list[Case]]]:
    """The ``per_day`` alerts with the highest score of each of the latest ``days`` days with alerts,
    in day order, the highest score first."""
    alerts = np.flatnonzero(joined.alerts)
    by_day: defaultdict[int, list[int]] = defaultdict(list)
    for row in alerts[np.lexsort((-joined.scores[alerts], joined.days[alerts]))]:
        rows = by_day[int(joined.days[row])]
        if len(rows) < per_day:
            rows.append(int(row))
    latest = list(by_day.items())[-days:] if days > 0 else []
    return [(day_date(day), [case(collection, joined, r) for r in rows]) for day, rows in latest]


def replay_command(transaction_id: str, topic: str | None) -> str:
    """The command that prints the full audit record of one transaction."""
    command = ["fraud-detector", "audit", "replay", "--transaction-id", transaction_id]
    return shlex.join([*command, "--topic", topic] if topic else command)


@dataclass(frozen=True)
class MaterialEvents:
    events: list[ModelEvent]  # every model event, and the score drifts that moved the mean enough
    small_score_drifts: Counter[int]  # per partition, the score drifts left out


def material_events(events: Sequence[ModelEvent], min_shift: float) -> MaterialEvents:
    """Leave out score drifts whose mean score moved by less than ``min_shift`` of its earlier value."""
    kept, small = [], Counter[int]()
    for event in events:
        if event.kind == SCORE_DRIFT and score_shift(event) < min_shift:
            small[event.partition] += 1
        else:
            kept.append(event)
    return MaterialEvents(kept, small)


def score_shift(event: ModelEvent) -> float:
    """How far the mean score moved, as a share of its earlier value; infinite when the event does
    not say (so it is listed) or the earlier mean was 0."""
    try:
        before, after = float(event.detail["mean_before"]), float(event.detail["mean_after"])
    except (KeyError, TypeError, ValueError):
        return float("inf")
    return abs(after - before) / before if before > 0 else float("inf")
