"""The few numbers of each notebook a reader looks for first, named, beside the paper's.

The site's index (`course_utils.harness.site`) shows them as a table built from a run's results files:
each row names a quantity, gives ours as the run recorded it (a percent, a paired difference
with its interval, a ratio, a count) and the paper's where the paper reports one. The paper's
numbers are facts from `shared/papers/` (quoted in the notebooks' paper tables), never ours.
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Highlight:
    """One row: `key` names the recorded value (for a paired difference, the stem of its
    `_mean_points`, `_low_points` and `_high_points` keys); `kind` says how to show it."""

    label: str
    key: str
    kind: str  # "accuracy", "share" (fractions shown as percent), "percent", "points" (a paired difference), "ratio", "number", "count", "text"
    paper: str = ""  # the paper's number as the paper gives it, or "" where it has none


def shown(headline: dict, highlight: Highlight) -> str:
    """Our value of `highlight` as a reader reads it, or "not in this run"."""
    if highlight.kind == "points":
        ends = [headline.get(f"{highlight.key}_{end}_points") for end in ("mean", "low", "high")]
        if None in ends:
            return "not in this run"
        return f"{ends[0]:+.2f} ({ends[1]:+.2f} to {ends[2]:+.2f}) points, paired, 95%"
    value = headline.get(highlight.key)
    if value is None:
        return "not in this run"
    if highlight.kind in ("accuracy", "share"):
        return f"{100 * value:.2f}%"
    if highlight.kind == "percent":
        return f"{value:+.2f}%"
    if highlight.kind == "ratio":
        return f"{value:.2f}x"
    if highlight.kind == "number":
        return f"{value:.2f}"
    if highlight.kind == "count":
        done, out_of = str(value).split("/")
        return f"{done} of {out_of}"
    return str(value)


def highlights_table(records: list[dict]) -> str:
    """An HTML table of every notebook's highlights, from its results records (each names its
    own highlights: the notebook's lesson owns them)."""
    rows = [f"<tr><td>{html.escape(record['notebook']) if index == 0 else ''}</td><td>{html.escape(h.label)}</td>"
            f"<td>{html.escape(shown(record.get('headline', {}), h))}</td><td>{html.escape(h.paper or '')}</td></tr>"
            for record in records
            for index, h in enumerate(Highlight(**fields) for fields in record.get("highlights", []))]
    return ("<table><tr><th>notebook</th><th>quantity</th><th>ours (this run)</th><th>the paper's</th></tr>\n"
            + "\n".join(rows) + "\n</table>")
