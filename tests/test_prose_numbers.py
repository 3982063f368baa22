"""Every number a notebook's introduction quotes as our result was produced by a recorded run.

The paragraph of a notebook's first cell that starts with "**Quick-profile results**" (with
the bullets that follow it) quotes the quick profile. Every decimal number in it must be one
of that notebook's recorded results (notebooks/results/quick/<notebook>.json, written by
`make course`), as the value or as a percentage, rounded to 2, 1 or 0 places, the bounds of
the 95% Wilson interval of a recorded accuracy on the quick profile's test images, its wall
time in minutes, or a setting of the quick profile (its width). A number quoted from a paper is
written right after the word "paper" ("the paper's 88.97", "paper: 88.97") and is skipped.
A count written "N of M" ("beats ThiNet at 4 of 5 levels") must be a count the run recorded
as "N/M", unless it follows the word "paper" or "report" (the report's "4 of 4"). Other whole
numbers (dates, sizes) are not checked.
"""

import json
import re
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest

from course_utils.claims import markers, not_shown
from course_utils.profiles import PROFILES
from course_utils.harness.run_course import RECORDED
from course_utils.uncertainty import accuracy_interval

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MARK = "**Quick-profile results**"


def quoted_block(markdown: str) -> str:
    """The quick-results paragraph and its bullets, or '' when there is none."""
    if MARK not in markdown:
        return ""
    block = []
    for paragraph in markdown[markdown.index(MARK):].split("\n\n"):
        if block and not paragraph.lstrip().startswith("-"):
            break
        block.append(paragraph)
    return "\n\n".join(block)


def quoted_numbers(block: str) -> list[str]:
    """The decimals of a block, less those right after the word 'paper'."""
    return [m.group(1) for m in re.finditer(r"(?<![\w.])(\d+\.\d+)", block)
            if "paper" not in block[max(0, m.start() - 12):m.start()]]


def quoted_counts(block: str) -> list[str]:
    """The "N of M" counts of a block as "N/M", less those right after 'paper' or 'report'."""
    return [f"{m.group(1)}/{m.group(2)}" for m in re.finditer(r"(?<![\w.,])(\d+) of (\d+)(?![\w.,]*\d)", block)
            if not re.search(r"paper|report", block[max(0, m.start() - 16):m.start()])]


def uncounted(block: str, record: dict) -> list[str]:
    recorded = {v for v in record.get("headline", {}).values() if isinstance(v, str)}
    return [count for count in quoted_counts(block) if count not in recorded]


def renderings(record: dict) -> set[str]:
    values = [v for v in record.get("headline", {}).values() if isinstance(v, (int, float))]
    values += [bound for v in values if 0 < v < 1 for bound in accuracy_interval(v, PROFILES["quick"].test_size)]
    values += [v for v in asdict(PROFILES["quick"]).values() if isinstance(v, float)]
    shown = set()
    for value in values:
        for number in (abs(value), abs(100 * value)):  # prose says "fell by 3.2", not "-3.2"
            shown |= {f"{number:.2f}", f"{number:.1f}", f"{number:.0f}"}
    if "seconds" in record:
        shown |= {f"{record['seconds'] / 60:.1f}", f"{record['seconds'] / 60:.0f}"}
    return shown


def unproduced(block: str, record: dict) -> list[str]:
    shown = renderings(record)
    return [n for n in quoted_numbers(block) if n not in shown and n.rstrip("0").rstrip(".") not in shown]


def test_the_check_catches_a_number_no_run_produced():
    record = {"headline": {"accuracy": 0.6373, "gap": -1.234}, "seconds": 722.0}
    good = (f"{MARK}: VGG-16 at 63.73% (62.78-64.67; the paper's 88.97), gap -1.23 points, 12.0 minutes, "
            "width 0.25.\n\nLater text 99.99")
    assert quoted_block(good).endswith("width 0.25.") and unproduced(quoted_block(good), record) == []
    assert unproduced(f"{MARK}: VGG-16 at 64.10%.", record) == ["64.10"]
    assert unproduced(f"{MARK}: VGG-16 at 63.73% (62.00-64.67).", record) == ["62.00"]
    bullets = f"{MARK}:\n\n- first 63.7%\n- second 12.34%\n\nafter the block 77.77"
    assert unproduced(quoted_block(bullets), record) == ["12.34"]


def test_the_check_catches_a_count_no_run_recorded():
    record = {"headline": {"wins": "4/4", "accuracy": 0.6373}}
    assert uncounted(f"{MARK}: beats it at 4 of 4 levels, where the report says 5 of 5.", record) == []
    assert uncounted(f"{MARK}: beats it at 4 of 4 levels and at 4 of 5 after fine-tuning.", record) == ["4/5"]
    assert uncounted(f"{MARK}: 4 of the first layer's 16 filters, 1,113 of 2,000.", record) == []  # not counts "N of M"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_quoted_quick_results_are_recorded_results(notebook):
    intro = nbformat.read(notebook, as_version=4).cells[0].source
    block = quoted_block(intro)
    if not quoted_numbers(block) and not quoted_counts(block):
        return  # nothing quoted as our result
    path = RECORDED / "quick" / f"{notebook.stem}.json"
    assert path.exists(), f"{notebook.name} quotes quick results, but no run recorded them in {path}"
    record = json.loads(path.read_text())
    missing = unproduced(block, record)
    assert not missing, f"{notebook.name} quotes {missing}, which its recorded quick run did not produce"
    counts = uncounted(block, record)
    assert not counts, f"{notebook.name} quotes the counts {counts}, which its recorded quick run did not record"


def test_a_stale_reference_copy_is_refused_and_new_words_are_carried_into_it():
    from reference_prose import StaleReference, refreshed

    def notebook(*cells):
        return nbformat.v4.new_notebook(cells=list(cells))
    parameters = nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell("PROFILE = 'quick'", metadata={"tags": ["injected-parameters"]})
    ran = nbformat.v4.new_code_cell("run()", execution_count=3,
                                    outputs=[nbformat.v4.new_output("stream", name="stdout", text="80%\n")])
    reference = notebook(nbformat.v4.new_markdown_cell("Old words."), parameters, injected, ran)
    source = notebook(nbformat.v4.new_markdown_cell("New words: [run](results/quick/00_x.ipynb)."), parameters,
                      nbformat.v4.new_code_cell("run()"))
    updated = refreshed(source, reference)
    assert [c.source for c in updated.cells] == ["New words: [run](00_x.ipynb).", *[c.source for c in reference.cells[1:]]]
    assert updated.cells[3].outputs == ran.outputs
    with pytest.raises(StaleReference, match="code cell 2"):
        refreshed(notebook(parameters, nbformat.v4.new_code_cell("run(faster=True)")), reference)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_introduction_links_its_reference_run_which_ran_this_code(notebook):
    """The executed copy kept beside the recorded results is a run of this notebook's code, with
    its current words (tools/reference_prose.py carries edited words into it); or, until it is
    recorded again, the introduction tells the reader that it ran earlier code, and only then."""
    from reference_prose import STALE_MARK, StaleReference, refreshed, says_stale

    link = f"(results/quick/{notebook.name})"
    source = nbformat.read(notebook, as_version=4)
    assert link in source.cells[0].source, f"{notebook.name}'s introduction does not link {link}"
    copy = RECORDED / "quick" / notebook.name
    assert copy.exists(), f"no reference run of {notebook.name}: record it with make course PROFILE=quick"
    reference = nbformat.read(copy, as_version=4)
    try:
        updated = refreshed(source, reference)
    except StaleReference as stale:
        assert says_stale(source), f"{notebook.name}: {stale}; record it again, or say so in its introduction ({STALE_MARK})"
        return
    assert not says_stale(source), f"{notebook.name} says its reference run is of earlier code, but it ran this code"
    assert updated == reference, f"{copy.name}'s words differ from the notebook's: run python tools/reference_prose.py"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_claim_of_the_words_held_in_the_recorded_run(notebook):
    """A sentence marked `<!-- claim: key -->` (the introduction's results, the takeaways) stands
    only when the reference run checked that claim and it held."""
    from reference_prose import says_stale

    source = nbformat.read(notebook, as_version=4)
    if says_stale(source):
        pytest.skip(f"{notebook.name}'s reference run is of earlier code (its introduction says so); its claims "
                    "are checked here once it is recorded again")
    keys = [key for cell in source.cells if cell.cell_type == "markdown" for key in markers(cell.source)]
    if not keys:
        return
    recorded = json.loads((RECORDED / "quick" / f"{notebook.stem}.json").read_text()).get("claims", {})
    unshown = not_shown(" ".join(f"<!-- claim: {key} -->" for key in keys), recorded)
    assert not unshown, f"{notebook.name} makes claims its reference run did not show: {unshown}"
