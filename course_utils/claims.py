"""Claims: every sentence that says A beats B, or that something grows, narrows or holds, is
checked by the run that the sentence is about.

    claims = Claims()
    claims("kl_beats_random_0.3", "KL beats random at 30% of the filters, before fine-tuning",
           held=difference.clear and difference.mean > 0, evidence=str(difference))

Each call computes whether the claim holds in this run, with its evidence (an interval, and
the correction for how many comparisons were made), says so in a line a learner reads, and
keeps it: `save_results(..., claims=claims.recorded)` writes them beside the headline numbers.
A sentence of the notebook's words that makes the claim carries the marker `<!-- claim: key
-->` (invisible when rendered); `annotated` adds, under every such sentence whose claim this
run did not show, a line that says so, in the executed copies and on the site; the prose test
fails when the recorded reference run contradicts a sentence.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

MARKER = re.compile(r"<!--\s*claim:\s*([\w.\-]+)\s*-->")


@dataclass(frozen=True)
class Claim:
    statement: str  # the claim in words, as a sentence would make it
    held: bool  # whether this run shows it
    evidence: str  # the numbers it rests on: an interval, a count, and what was corrected for


class Claims:
    """The claims one run of a notebook checked, by key."""

    def __init__(self):
        self.checked: dict[str, Claim] = {}

    def __call__(self, key: str, statement: str, held: bool, evidence: str) -> bool:
        """Check one claim: prints whether this run shows it, keeps it, returns whether it held."""
        if not MARKER.fullmatch(f"<!-- claim: {key} -->"):
            raise ValueError(f"a claim's key is letters, digits, '.', '_' and '-': not {key!r}")
        held = bool(held)
        self.checked[key] = Claim(statement, held, evidence)
        print(f"{'✔ this run shows' if held else '✘ this run does not show'} that {statement} ({evidence})")
        return held

    @property
    def recorded(self) -> dict[str, dict]:
        """The claims as plain data, for the results file."""
        return {key: asdict(claim) for key, claim in self.checked.items()}


def markers(markdown: str) -> list[str]:
    """The keys of the claims a piece of Markdown makes."""
    return MARKER.findall(markdown)


def not_shown(markdown: str, recorded: dict[str, dict]) -> list[tuple[str, str]]:
    """(key, what to say) for every claim `markdown` makes that the run in `recorded` did not show."""
    said = []
    for key in dict.fromkeys(markers(markdown)):
        claim = recorded.get(key)
        if claim is None:
            said.append((key, f"this run did not check the claim `{key}` (another profile, or a part of the "
                              f"notebook left out)"))
        elif not claim["held"]:
            said.append((key, f"this run does not show that {claim['statement']} ({claim['evidence']})"))
    return said


def annotated(notebook, recorded: dict[str, dict]):
    """`notebook` (nbformat) with a visible line under every Markdown cell whose claims this run
    (its `recorded` claims) did not show; changed in place and returned."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [f"> **Not in this run:** {what}." for _, what in not_shown(cell.source, recorded)]
        if lines and "**Not in this run:**" not in cell.source:
            cell.source = cell.source.rstrip() + "\n\n" + "\n>\n".join(lines)
    return notebook
