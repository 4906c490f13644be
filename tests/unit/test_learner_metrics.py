"""The learner exports its own label counts as of its last commit: joined, unjoined, expired."""

from __future__ import annotations

from collections import Counter

from detector.service.learner_metrics import LearnerMetrics
from detector.service.metrics_page import MetricsPage


def page(metrics: LearnerMetrics) -> MetricsPage:
    return MetricsPage(tuple(sample for family in metrics.registry.collect() for sample in family.samples))


def test_label_counts_are_those_of_the_last_commit() -> None:
    metrics = LearnerMetrics()
    assert page(metrics).total("fraud_learner_labels_unjoined_total") == 0
    stats = Counter(labels_joined=40, labels_unjoined=2, pending_expired=7, idle_marks=3)
    metrics.began()
    metrics.committed(version=5, generation=1, labels_learned=40, checkpointed=False, stats=stats)
    stats["labels_unjoined"] += 1  # after the commit: not reported until the next one
    exported = page(metrics)
    assert exported.total("fraud_learner_labels_joined_total") == 40
    assert exported.total("fraud_learner_labels_unjoined_total") == 2
    assert exported.total("fraud_learner_scores_expired_total") == 7
