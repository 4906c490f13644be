"""What an analyst can tune in the audit report beyond k: what counts as material, and how long lists are."""

from __future__ import annotations

from dataclasses import dataclass

# A score-drift event is listed only when the mean score moved by at least this share of its earlier
# value. ADWIN flags every statistically sure shift, and on millions of scores that includes
# 0.131 -> 0.121 (8%): real, but too small to change which transactions pass a threshold. Relative,
# because the mean score follows the fraud rate: 0.01 is noise at a mean of 0.13, not at 0.02.
DEFAULT_MIN_SCORE_SHIFT = 0.2


@dataclass(frozen=True)
class ReportOptions:
    """``audit_topic``: where the review queue's replay commands read (None: the command's default)."""

    min_score_shift: float = DEFAULT_MIN_SCORE_SHIFT
    queue_per_day: int = 5
    queue_days: int = 7  # the latest days with alerts: a queue is worked from the most recent
    missed_cases: int = 20
    audit_topic: str | None = None
