"""The pages of a run (course_utils.harness.site), built from a hand-made run folder; the browser
test in test_notebooks.py opens the pages of a real smoke run."""

import base64
import json
from pathlib import Path

import nbformat
import pytest

from course_utils.harness.run_course import write_summary
from course_utils.harness.site import build_site, notebook_title

PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc00000030101002518dd8d0000000049454e44ae426082")).decode()


def test_a_run_becomes_an_index_and_a_page_per_notebook(tmp_path):
    figure = nbformat.v4.new_output("display_data", data={"image/png": PIXEL, "text/plain": "<Figure>"})
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 07 · A paper\n\nWhat it shows, [run](results/quick/07_a_paper.ipynb)."),
        nbformat.v4.new_code_cell("plot()", outputs=[figure], execution_count=1)])
    nbformat.write(notebook, tmp_path / "07_a_paper.ipynb")
    (tmp_path / "07_a_paper.json").write_text(json.dumps(dict(
        notebook="07_a_paper", profile="smoke", dataset="MNIST", headline={"accuracy": 0.5, "groups": "[0] | [1]"})))
    write_summary(tmp_path, [dict(notebook="07_a_paper", status="ok", seconds=90.0)])
    index = build_site(tmp_path).read_text()
    page = (tmp_path / "site" / "07_a_paper.html").read_text()
    assert notebook_title(notebook) == "07 · A paper"
    assert "href='07_a_paper.html'" in index and "07 · A paper" in index and "1.5 min" in index
    assert "<table>" in index and "accuracy: 0.5" in index and "[0] | [1]" in index  # the summary, one row
    assert PIXEL in page and "What it shows" in page
    assert 'href="07_a_paper.html"' in page and ".ipynb" not in page  # its link to a notebook opens a page


def test_a_page_shows_its_equations_typeset_with_no_network(tmp_path, browser, executed):
    """The site's own copy of MathJax typesets the TeX of a page opened from disk while every
    request off the disk is refused (nbconvert's default loads MathJax from a CDN)."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# 03 · Equations\n\nInline $D(X, \\theta)$, and displayed:\n\n"
        "$$L_i = \\frac{1}{n}\\sum_{j=1}^{n} \\mathrm{KL}\\left[D(X_j, \\theta) \\,\\middle\\|\\, D(X_j, \\hat\\theta_{-i})\\right]$$")])
    nbformat.write(notebook, tmp_path / "03_equations.ipynb")
    build_site(tmp_path)
    refused = []
    page = executed.new_page()  # the session's Chromium (playwright's sync API runs once per thread)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
               else (refused.append(route.request.url), route.abort()))
    page.goto((tmp_path / "site" / "03_equations.html").as_uri())
    page.wait_for_selector(".MathJax_Display", timeout=30_000)
    typeset = page.locator(".MathJax, .MathJax_Display").count()
    text = page.locator(".jp-RenderedMarkdown").inner_text()
    page.close()
    assert typeset >= 2 and "\\frac" not in text and "$" not in text, (typeset, text[:300])
    assert refused == [], f"the page asked the network for {refused}"


def test_make_site_builds_the_pages_of_a_recorded_run_or_says_what_is_missing(tmp_path, capsys):
    from course_utils.harness.site import main

    recorded, site = tmp_path / "quick", tmp_path / "pages"
    recorded.mkdir()
    assert main([str(recorded), "--out", str(site)]) == 1 and "record a run first" in capsys.readouterr().err
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 02 · A paper")]),
                   recorded / "02_a_paper.ipynb")
    (recorded / "02_a_paper.json").write_text(json.dumps(dict(
        notebook="02_a_paper", profile="quick", headline={}, seconds=600.0, recorded="2026-12-02")))
    assert main([str(recorded), "--out", str(site)]) == 0
    index = (site / "index.html").read_text()
    assert "02 · A paper" in index and "recorded 2026-12-02" in index and "10.0 min" in index
    assert "<h1>Pruning papers, reproduced: the recorded quick run</h1>" in index
    assert (site / "02_a_paper.html").exists() and (site / "mathjax" / "MathJax.js").exists()


def test_the_index_names_each_highlight_beside_the_papers_number(tmp_path):
    from dataclasses import asdict

    from course_utils.harness.highlights import Highlight

    highlights = [Highlight("benchmark AlexNet, test accuracy", "benchmark_accuracy", "accuracy", "87.53%"),
                  Highlight("hierarchy after retraining, test accuracy", "hierarchy_after_retraining_accuracy", "accuracy"),
                  Highlight("hierarchy minus benchmark", "hierarchy_minus_benchmark", "points", "+1.44 points")]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · A paper")]),
                   tmp_path / "01_divide_and_delete_filters.ipynb")
    (tmp_path / "01_divide_and_delete_filters.json").write_text(json.dumps(dict(
        notebook="01_divide_and_delete_filters", profile="quick", highlights=[asdict(h) for h in highlights], headline={
            "benchmark_accuracy": 0.9812, "hierarchy_minus_benchmark_mean_points": -1.234,
            "hierarchy_minus_benchmark_low_points": -2.5, "hierarchy_minus_benchmark_high_points": 0.04})))
    index = build_site(tmp_path).read_text()
    assert "<td>benchmark AlexNet, test accuracy</td><td>98.12%</td><td>87.53%</td>" in index
    assert "<td>-1.23 (-2.50 to +0.04) points, paired, 95%</td><td>+1.44 points</td>" in index
    assert "hierarchy after retraining, test accuracy</td><td>not in this run</td>" in index  # never made up


@pytest.mark.parametrize("notebook", sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda path: path.stem)
def test_every_notebook_saves_highlights_its_lesson_lists(notebook):
    """Each notebook passes its lesson's highlights to save_results, so the index has its rows."""
    code = "\n".join(c.source for c in nbformat.read(notebook, 4).cells if c.cell_type == "code")
    assert "highlights=lesson.HIGHLIGHTS" in code
    module = notebook.parent / f"lesson{notebook.name[:2]}.py"
    assert module.exists() and "HIGHLIGHTS = [" in module.read_text()
