"""The frame of the report page and its building blocks: tables, and how numbers are written.

One style for every number: counts with thousands separators, shares as percentages, ratios with
three decimals, and "–" where there is nothing to measure.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime


class Html(str):
    """Markup built here from escaped parts, so a table cell takes it as it is."""


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css_class}'>\n<tr>{head}</tr>\n{body}\n</table>"


def _cell(content: str) -> str:
    return content if isinstance(content, Html) else html.escape(content)


def hint(text: str, title: str | None) -> Html:
    """``text`` with ``title`` shown on hover (a reason code and its sentence)."""
    if title is None:
        return Html(html.escape(text))
    return Html(f"<abbr title='{html.escape(title)}'>{html.escape(text)}</abbr>")


def lines(items: Iterable[Html]) -> Html:
    return Html("<br>".join(items))


def joined(items: Iterable[Html]) -> Html:
    """Items one after the other, wrapping where the cell is full."""
    return Html(", ".join(items))


def code(text: str) -> Html:
    return Html(f"<code>{html.escape(text)}</code>")


def document(body: str) -> str:
    """The whole HTML page around ``body``, stamped with the time it was generated."""
    generated = datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fraud detection audit report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }}
td:first-child, th:first-child {{ text-align: left; }}
table.cases td, table.cases th {{ text-align: left; vertical-align: top; }}
abbr {{ text-decoration: underline dotted; cursor: help; }}
code {{ font-size: 0.9em; }}
table.cases td {{ max-width: 22em; }}
table.totals tr:last-child td {{ font-weight: 600; }}
table.totals td {{ white-space: nowrap; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.note {{ color: #444; max-width: 60em; }}
</style>
</head>
<body>
<h1>Fraud detection audit report</h1>
<p class="note">Generated {generated}.</p>
{body}
</body>
</html>
"""


def count(value: int) -> str:
    return f"{value:,}"


def share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "–"


def money(value: float) -> str:
    return f"{value:,.2f}"


def ratio(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"
