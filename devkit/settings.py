"""Service settings for one run on a shared broker, and the environment that gives them to a process.

Names are unique per run, so runs on one broker never read each other's topics or join each other's
group; the environment is derived from the settings' own variable names, so none is written twice.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from detector.service.settings import ENVIRONMENT_NAMES, ServiceSettings


def unique_prefix(kind: str) -> str:
    """``kind`` and a random suffix: the start of every topic and group name of one run."""
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def unique_settings(bootstrap: str, prefix: str | None = None, **overrides: object) -> ServiceSettings:
    """Defaults but for topics, group and state directory named after ``prefix`` (by default a
    fresh one), no metrics server, a model per partition (``FRAUD_SHARING=local``: a run that wants
    the shared learner starts one, see :mod:`devkit.topology`), and ``overrides``."""
    prefix = prefix or unique_prefix("run")
    names = {
        "transactions_topic": f"{prefix}.transactions",
        "labels_topic": f"{prefix}.labels",
        "audit_topic": f"{prefix}.audit",
        "decisions_topic": f"{prefix}.decisions",
        "dead_letter_topic": f"{prefix}.dead-letter",
        "checkpoint_topic": f"{prefix}.checkpoints",
        "shared_updates_topic": f"{prefix}.shared-updates",
        "shared_versions_topic": f"{prefix}.shared-versions",
        "shared_snapshots_topic": f"{prefix}.shared-snapshots",
        "group_id": f"{prefix}-group",
        "state_dir": str(Path(tempfile.gettempdir()) / "fraud-state" / prefix),
    }
    defaults = ServiceSettings(bootstrap_servers=bootstrap, metrics_port=0, sharing="local")
    return defaults.replaced(**{**names, **overrides})


def settings_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment that makes ``fraud-detector run`` use exactly ``settings``."""
    return {env: str(getattr(settings, name)) for name, env in ENVIRONMENT_NAMES.items()}
