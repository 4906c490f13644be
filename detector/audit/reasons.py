"""What each reason code means, in one sentence an analyst can read out: the one place for them.

Reason codes are stable strings (:mod:`detector.engine.policy`, :mod:`detector.engine.engine`):
``score:review`` and ``score:block`` for a threshold, ``rule:<name>`` for a policy rule,
``feature:<name>`` for the features that pushed the score up most, and the event-time flags.
Feature names carry their window (``card_count_1h``), so sentences are built from the name's
pattern and any window the features are configured with reads right.

>>> sentence("feature:card_count_1h")
"The card's number of transactions in the hour before."
>>> sentence("rule:large_amount")
'The policy rule large_amount matched this transaction.'
"""

from __future__ import annotations

import re

FIXED = {
    "score:review": "The fraud score reached the review threshold.",
    "score:block": "The fraud score reached the block threshold.",
    "late:event_time": "The transaction arrived much later than its event time, so it was scored"
    " against newer state.",
    "skew:future_event_time": "The transaction is stamped too far in the future; it was scored as if"
    " it happened now.",
}
# Feature name -> what it measures (a ``feature:`` code means it pushed the score up most).
FEATURES = {
    "amount": "The amount itself.",
    "log_amount": "The amount itself (on a log scale).",
    "card_log_seconds_since_last": "The time since the card's previous transaction.",
    "card_new_terminal": "The card had not been used at this terminal before.",
    "card_known_frauds": "Frauds were already confirmed on this card.",
    "card_log_seconds_since_terminal": "The time since the card last paid at this terminal.",
    "hour_sin": "The time of day (UTC).",
    "hour_cos": "The time of day (UTC).",
    "is_night": "The transaction happened at night (00:00 to 06:00 UTC).",
    "is_weekend": "The transaction happened at a weekend (UTC).",
}
# Feature names with a window at the end -> the sentence, with {window} for its length in words.
WINDOWED = {
    "card_count": "The card's number of transactions in the {window} before.",
    "card_mean_amount": "The card's mean amount over the {window} before.",
    "card_amount_ratio": "The amount relative to the card's mean over the {window} before.",
    "card_amount_zscore": "How unusual the amount is for the card (z-score over the {window} before).",
    "terminal_count": "The terminal's number of transactions in the {window} before.",
    "terminal_risk": "The share of the terminal's labelled transactions that were fraud in the {window}"
    " before.",
    "terminal_frauds": "The terminal's confirmed frauds in the {window} before.",
    "terminal_amount_ratio": "The amount relative to the terminal's mean over the {window} before.",
}
_WINDOW = re.compile(r"^(?P<stem>[a-z_]+)_(?P<count>\d+)(?P<unit>[dhms])$")
_UNITS = {"d": "day", "h": "hour", "m": "minute", "s": "second"}


def sentence(code: str) -> str | None:
    """The meaning of a reason code; None for a code this version does not know."""
    if code in FIXED:
        return FIXED[code]
    kind, _, name = code.partition(":")
    if kind == "rule" and name:
        return f"The policy rule {name} matched this transaction."
    if kind == "feature":
        return feature_sentence(name)
    return None


def feature_sentence(name: str) -> str | None:
    """What a feature says about a transaction; None for a name of no known pattern."""
    if name in FEATURES:
        return FEATURES[name]
    if name.startswith("extra_") and len(name) > len("extra_"):
        return f"The input field {name.removeprefix('extra_')} sent with the transaction."
    match = _WINDOW.match(name)
    if match is None or match["stem"] not in WINDOWED:
        return None
    return WINDOWED[match["stem"]].format(window=window_words(int(match["count"]), match["unit"]))


def window_words(count: int, unit: str) -> str:
    """``(1, "h")`` -> ``"hour"``, ``(7, "d")`` -> ``"7 days"``."""
    return _UNITS[unit] if count == 1 else f"{count} {_UNITS[unit]}s"
