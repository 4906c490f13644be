"""The sections an analyst works from: missed fraud, reason codes and rules, and the review queue.

Every reason code is shown with its sentence (:mod:`detector.audit.reasons`): in a column where
codes are counted, on hover where a case lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from detector.audit import page
from detector.audit.findings import Case, CodeStats, MissedFraud, replay_command
from detector.audit.options import ReportOptions
from detector.audit.reasons import feature_sentence, sentence
from detector.engine.records import format_timestamp


def missed_section(missed: MissedFraud, labelled: int) -> str:
    if not labelled:
        return "<h2>Missed fraud</h2>\n<p>No labels: which frauds were missed is not known.</p>"
    share_count = page.share(missed.missed, missed.frauds)
    share_amount = page.share(missed.missed_amount, missed.fraud_amount)
    rows = [
        ("labelled frauds", page.count(missed.frauds), page.money(missed.fraud_amount), ""),
        ("scored below the review threshold", page.count(missed.missed), page.money(missed.missed_amount),
         f"{share_count} of the frauds, {share_amount} of their amount"),
        ("… of which a rule still alerted on", page.count(missed.rule_alerts), "", ""),
    ]  # fmt: skip
    headers = ("frauds", "transactions", "amount", "share")
    cases = [_case_cells(case, with_features=True) for case in missed.cases]
    listed = (
        f"<h3>The {len(cases)} costliest missed frauds</h3>\n"
        "<p class='note'>Those approved first (nothing alerted on them), then those a rule alerted"
        " on; the costliest first within each. Features: the three furthest from the mean of every"
        " decision in the report, as value (z-score); hover for what each measures. A score below the"
        " review threshold records no model explanation, so these say what was unusual, not what the"
        " model weighed.</p>\n" + page.table((*CASE_HEADERS, "features that stood out"), cases, "cases")
        if cases
        else ""
    )
    return f"""
<h2>Missed fraud</h2>
<p class="note">Labelled frauds whose score was below the review threshold in force for that
decision: the score did not send them to review, whatever a rule did.</p>
{page.table(headers, rows)}
{listed}
"""


def reasons_section(stats: Sequence[CodeStats], decisions: int) -> str:
    rules = [_stats_row(s, decisions) for s in stats if s.code.startswith("rule:")]
    others = [_stats_row(s, decisions)[:-1] for s in stats if not s.code.startswith("rule:")]
    headers = ("reason code", "meaning", "fired", "share of decisions", "labelled", "frauds", "precision")
    rule_headers = (*headers, "frauds below the review threshold")
    return f"""
<h2>Reason codes and rules</h2>
<p class="note">How often each reason code was given and how precise it was: precision is the
share of frauds among the labelled transactions it was given to. For a rule, the last column counts
the frauds it flagged although their score was below the review threshold: what the rule adds to
the model. <code>feature:</code> codes name the features that pushed the score up most; they are
given only to scores at or above the review threshold.</p>
<h3>Rules</h3>
{page.table(rule_headers, rules, "cases") if rules else "<p>No rule fired in this period.</p>"}
<h3>Scores, features and event-time flags</h3>
{page.table(headers, others, "cases") if others else "<p>None.</p>"}
"""


def queue_section(queue: Sequence[tuple[date, list[Case]]], options: ReportOptions) -> str:
    if not queue:
        return "<h2>Review queue</h2>\n<p>No alerts in this period.</p>"
    rows = []
    for day, cases in reversed(queue):  # the latest day first: that is the one to work on
        for rank, case in enumerate(cases, 1):
            command = page.code(replay_command(case.transaction_id, options.audit_topic))
            first = day.isoformat() if rank == 1 else ""
            rows.append((first, str(rank), *_case_cells(case, with_features=False), command))
    headers = ("day (UTC)", "rank", *CASE_HEADERS, "command for the full record")
    return f"""
<h2>Review queue</h2>
<p class="note">Each day's {options.queue_per_day} alerts with the highest score, for the latest
{options.queue_days} days with alerts (--queue-per-day, --queue-days), the latest day first; the
label column says what is known so far. The command prints the decision's full audit record (every
feature, the model and where the input came from).</p>
{page.table(headers, rows, "cases")}
"""


CASE_HEADERS = ("transaction", "card", "event time (UTC)", "amount", "score", "decision", "label",
                "reason codes (hover for the meaning)")  # fmt: skip


def _case_cells(case: Case, with_features: bool) -> tuple[str, ...]:
    cells = (
        case.transaction_id,
        case.card,
        format_timestamp(case.time),
        page.money(case.amount),
        f"{case.score:.3f}",
        case.decision,
        case.label,
        page.joined(page.hint(code, sentence(code)) for code in case.reason_codes) or "–",
    )
    if not with_features:
        return cells
    features = (
        page.hint(f"{name} {value:.4g} ({z:+.1f})", feature_sentence(name))
        for name, value, z in case.features
    )
    return (*cells, page.lines(features))


def _stats_row(stats: CodeStats, decisions: int) -> tuple[str, ...]:
    return (
        page.code(stats.code),
        sentence(stats.code) or "–",
        page.count(stats.fired),
        page.share(stats.fired, decisions),
        page.count(stats.labelled),
        page.count(stats.frauds),
        page.ratio(stats.precision),
        page.count(stats.frauds_below_review),
    )
