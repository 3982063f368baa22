"""Claims (course_utils.claims): each is checked by the run and kept; a sentence whose claim the
run did not show gets a visible line under it in the executed copy, and one it showed does not."""

import nbformat
import pytest

from course_utils.claims import Claims, annotated, markers, not_shown
from course_utils.harness.results import save_results
from course_utils.harness.run_course import annotate_claims


def test_a_claim_is_checked_said_and_recorded(capsys):
    claims = Claims()
    assert claims("a_beats_b", "A beats B", held=True, evidence="+2.0 (+0.5 to +3.5) points")
    assert not claims("b_narrows", "the gap narrows", held=False, evidence="-0.3 (-1.2 to +0.6) points")
    said = capsys.readouterr().out
    assert "✔ this run shows that A beats B (+2.0 (+0.5 to +3.5) points)" in said
    assert "✘ this run does not show that the gap narrows" in said
    assert claims.recorded["b_narrows"] == {"statement": "the gap narrows", "held": False,
                                            "evidence": "-0.3 (-1.2 to +0.6) points"}
    with pytest.raises(ValueError, match="a claim's key"):
        claims("a beats b", "A beats B", held=True, evidence="")


def test_a_sentence_the_run_did_not_show_is_marked_and_one_it_showed_is_not():
    recorded = {"held": {"statement": "A beats B", "held": True, "evidence": "e1"},
                "failed": {"statement": "C beats D", "held": False, "evidence": "e2"}}
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("A beats B <!-- claim: held -->."),
        nbformat.v4.new_markdown_cell("C beats D <!-- claim: failed -->, E grows <!-- claim: unchecked -->."),
        nbformat.v4.new_code_cell("# C beats D <!-- claim: failed -->")])
    assert markers(notebook.cells[1].source) == ["failed", "unchecked"]
    assert [key for key, _ in not_shown(notebook.cells[1].source, recorded)] == ["failed", "unchecked"]
    cells = annotated(notebook, recorded).cells
    assert cells[0].source == "A beats B <!-- claim: held -->."
    assert "> **Not in this run:** this run does not show that C beats D (e2)." in cells[1].source
    assert "did not check the claim `unchecked`" in cells[1].source
    assert cells[2].source == "# C beats D <!-- claim: failed -->"  # code is never annotated
    again = annotated(notebook, recorded).cells[1].source
    assert again.count("**Not in this run:**") == 2  # annotating twice adds nothing


def test_the_course_run_annotates_each_executed_copy_from_its_results(tmp_path):
    executed = tmp_path / "09_x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("X narrows <!-- claim: x -->.")]),
                   executed)
    claims = Claims()
    claims("x", "X narrows", held=False, evidence="+0.1 (-0.4 to +0.6)")
    save_results(tmp_path / "09_x.json", "09_x", "smoke", "data", claims=claims.recorded, value=1.0)
    annotate_claims(executed, tmp_path / "09_x.json")
    assert "this run does not show that X narrows" in nbformat.read(executed, 4).cells[0].source
