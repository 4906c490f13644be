"""The service's topics by role, both ways: which topic a role writes to, which role a topic is read as.

Roles are what the code speaks of (``transactions``, ``labels``, ``audit`` ...); topic names are
configured (:class:`~detector.service.settings.ServiceSettings`), so several deployments can
share a cluster.

>>> topics = TopicMap({TRANSACTIONS: "tx", LABELS: "lb", AUDIT: "au"})
>>> topics.name(AUDIT), topics.role("lb"), topics.inputs
('au', 'labels', {'transactions': 'tx', 'labels': 'lb'})
"""

from __future__ import annotations

from collections.abc import Mapping

from detector.service.settings import ServiceSettings

TRANSACTIONS, LABELS = "transactions", "labels"
AUDIT, DECISIONS, DEAD_LETTER = "audit", "decisions", "dead_letter"
CHECKPOINTS = "checkpoints"
SHARED_UPDATES, SHARED_VERSIONS, SHARED_SNAPSHOTS = "shared_updates", "shared_versions", "shared_snapshots"
INPUT_ROLES = (TRANSACTIONS, LABELS)
OUTPUT_ROLES = (AUDIT, DECISIONS, DEAD_LETTER)


class TopicMap:
    """Role -> topic name and topic name -> role, for the roles it was given."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = dict(names)
        self._roles = {name: role for role, name in self._names.items()}
        self.inputs = {role: self._names[role] for role in INPUT_ROLES if role in self._names}
        self.shared = False  # whether the scorers' transactions also write shared updates

    @classmethod
    def of(cls, settings: ServiceSettings) -> TopicMap:
        return cls(
            {
                TRANSACTIONS: settings.transactions_topic,
                LABELS: settings.labels_topic,
                AUDIT: settings.audit_topic,
                DECISIONS: settings.decisions_topic,
                DEAD_LETTER: settings.dead_letter_topic,
                CHECKPOINTS: settings.checkpoint_topic,
                SHARED_UPDATES: settings.shared_updates_topic,
                SHARED_VERSIONS: settings.shared_versions_topic,
                SHARED_SNAPSHOTS: settings.shared_snapshots_topic,
            }
        )

    def name(self, role: str) -> str:
        return self._names[role]

    def role(self, topic: str) -> str:
        return self._roles[topic]

    def written(self) -> list[str]:
        """Every topic the service's transactions write to: the outputs, the checkpoints and, when
        the partitions share one model, the shared updates."""
        roles = (*OUTPUT_ROLES, CHECKPOINTS, *((SHARED_UPDATES,) if self.shared else ()))
        return [self._names[role] for role in roles]
