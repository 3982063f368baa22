"""The pages of a run (course_utils.site), built from a hand-made run folder; the browser
test in test_notebooks.py opens the pages of a real smoke run."""

import base64
import json

import nbformat

from course_utils.run_course import write_summary
from course_utils.site import build_site, notebook_title

PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc00000030101002518dd8d0000000049454e44ae426082")).decode()


def test_a_run_becomes_an_index_and_a_page_per_notebook(tmp_path):
    figure = nbformat.v4.new_output("display_data", data={"image/png": PIXEL, "text/plain": "<Figure>"})
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 07 · A paper\n\nWhat it shows."),
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
    assert PIXEL in page and "What it shows." in page
