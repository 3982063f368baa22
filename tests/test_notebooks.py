"""Every notebook in notebooks/ runs, as stored, in a fresh kernel: in the smoke profile
(its outputs marked NBVAL_CHECK_OUTPUT must match the stored ones) and in the `shapes`
profile (the papers' widths on a few images, so that a shape, memory or indexing error at
full width fails here and not on a student's GPU).

Each notebook is executed once per profile per session (`executed`); the run test, the
output check, the widget test and the site test all read that one execution. A notebook
with widgets runs its smoke profile in JupyterLab in a real Chromium (tests/browser_lab.py),
where every widget control is moved once; without Chromium, under papermill, and the
browser tests are skipped with a message that says how to install it. The notebooks are found by
globbing: a new notebook is tested without touching this file.
"""

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from browser_lab import has_widgets
from course_utils.grading import lesson_module
from course_utils.harness.execution import NotebookFailed, execute
from course_utils.harness.run_course import record_results, write_summary

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CHECK_MARK = "NBVAL_CHECK_OUTPUT"


def runs_of(notebooks: list[Path], profile: str) -> list:
    """The notebooks as test parameters, each tied to its run in `profile`: under pytest-xdist
    (`make test`, --dist loadgroup) every test that reads one run goes to the worker that makes it."""
    return [pytest.param(path, id=path.stem, marks=pytest.mark.xdist_group(f"{path.stem}-{profile}"))
            for path in notebooks]


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_foundations.ipynb"


@pytest.mark.parametrize("notebook", runs_of(NOTEBOOKS, "smoke"))
def test_notebook_runs_in_the_smoke_profile(notebook, executed):
    record = json.loads(executed(notebook, "smoke").results.read_text())
    assert record["notebook"] == notebook.stem and record["profile"] == "smoke"
    assert record["headline"], "a notebook reports at least one headline number"


def comparable(outputs) -> list:
    """What must stay the same in a checked cell's outputs: printed text (not stderr, where
    warnings come and go) joined across the pieces the kernel happened to flush it in,
    plain-text results and errors."""
    kept = []
    for output in outputs:
        if output.output_type == "stream" and output.name == "stdout":
            if kept and kept[-1][0] == "stdout":
                kept[-1] = ("stdout", kept[-1][1] + output.text)
            else:
                kept.append(("stdout", output.text))
        elif output.output_type in ("execute_result", "display_data"):
            kept.append((output.output_type, output.data.get("text/plain")))
        elif output.output_type == "error":
            kept.append(("error", output.ename, output.evalue))
    return kept


@pytest.mark.parametrize("notebook", runs_of(NOTEBOOKS, "smoke"))
def test_checked_outputs_match_the_stored_ones(notebook, executed):
    ran = {cell.id: cell for cell in nbformat.read(executed(notebook, "smoke").path, 4).cells}
    stored = [c for c in nbformat.read(notebook, 4).cells
              if c.cell_type == "code" and CHECK_MARK in c.source]
    for cell in stored:
        assert comparable(ran[cell.id].outputs) == comparable(cell.outputs), (
            f"the output of the cell starting {cell.source[:60]!r} changed; if on purpose, "
            f"store the new one with tools/store_notebook.py")


@pytest.mark.parametrize("notebook", runs_of(NOTEBOOKS, "shapes"))
def test_notebook_runs_at_the_papers_widths(notebook, executed):
    record = json.loads(executed(notebook, "shapes").results.read_text())
    assert record["profile"] == "shapes" and record["headline"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_clean(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    assert any("parameters" in c.metadata.get("tags", []) for c in cells), \
        "a cell tagged 'parameters' lets papermill set PROFILE"
    for cell in cells:
        if cell.cell_type != "code":
            continue
        if CHECK_MARK in cell.source:
            assert cell.outputs and cell.execution_count, \
                "a checked cell keeps its output and execution count (tools/store_notebook.py)"
        else:
            assert not cell.outputs and cell.execution_count is None, \
                f"stored outputs in a cell starting {cell.source[:60]!r}"


def test_summary_is_built_from_the_results_files(tmp_path):
    (tmp_path / "00_x.json").write_text(json.dumps(dict(
        notebook="00_x", profile="smoke", dataset="MNIST", headline={"accuracy": 0.5})))
    runs = [dict(notebook="00_x", status="ok", seconds=12.0),
            dict(notebook="01_y", status="failed: KeyError", seconds=3.0)]
    summary = write_summary(tmp_path, runs).read_text()
    assert "| 00_x | ok | smoke | MNIST | 12 s | accuracy: 0.5 |" in summary
    assert "| 01_y | failed: KeyError |" in summary


def test_the_summary_can_be_rebuilt_beside_its_runs_file(tmp_path):
    (tmp_path / "00_x.json").write_text(json.dumps(dict(
        notebook="00_x", profile="smoke", dataset="MNIST", headline={"accuracy": 0.5})))
    runs = [dict(notebook="00_x", status="ok", seconds=12.0)]
    first = write_summary(tmp_path, runs).read_text()  # writes runs.json beside the results
    assert write_summary(tmp_path, runs).read_text().splitlines()[4:] == first.splitlines()[4:]


def test_a_bar_in_a_headline_value_does_not_break_the_summary_table(tmp_path):
    (tmp_path / "01_x.json").write_text(json.dumps(dict(
        notebook="01_x", profile="smoke", dataset="MNIST",
        headline={"superclasses": "[0, 1] | [2] | [3]"})))
    summary = write_summary(tmp_path, [dict(notebook="01_x", status="ok", seconds=1.0)]).read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| 01_x"))
    cells = re.split(r"(?<!\\)\|", row)[1:-1]
    assert len(cells) == 6 and cells[-1].strip() == r"superclasses: [0, 1] \| [2] \| [3]"


def test_a_quick_run_is_recorded_in_the_repo_with_its_executed_copy_and_a_smoke_run_is_not(tmp_path):
    recorded = tmp_path / "recorded"
    for profile in ("quick", "smoke"):
        out = tmp_path / profile
        out.mkdir()
        (out / "02_x.json").write_text(json.dumps(dict(
            notebook="02_x", profile=profile, dataset="CIFAR-10", headline={"accuracy": 0.8})))
        executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
            "Read [`results/quick/02_x.ipynb`](results/quick/02_x.ipynb); see [the paper](https://arxiv.org/a)."),
            nbformat.v4.new_code_cell("run()", execution_count=1, outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="100%|#####| 3/3\n"),
            nbformat.v4.new_output("stream", name="stdout", text="accuracy 80%\n"),
            nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0K", "text/plain": "<Figure>"}),
            nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "a"}}),
            nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "b"},
                                                         "text/plain": "training:   0%|          | 0/704"})])])
        executed.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
        nbformat.write(executed, out / "02_x.ipynb")
        record_results(out, dict(notebook="02_x", status="ok", seconds=600.0), recorded)
    record_results(tmp_path / "quick", dict(notebook="03_y", status="failed: X", seconds=1.0), recorded)
    assert sorted(p.relative_to(recorded).as_posix() for p in recorded.rglob("*.*")) == \
        ["quick/02_x.ipynb", "quick/02_x.json"]
    kept = json.loads((recorded / "quick" / "02_x.json").read_text())
    assert kept["seconds"] == 600.0 and kept["headline"] == {"accuracy": 0.8}
    reference = nbformat.read(recorded / "quick" / "02_x.ipynb", 4)  # the executed copy, to read
    assert "widgets" not in reference.metadata
    assert [o.get("name") or list(o.data) for o in reference.cells[1].outputs] == \
        ["stdout", ["image/png", "text/plain"]]
    assert reference.cells[0].source == "Read [`results/quick/02_x.ipynb`](02_x.ipynb); see [the paper](https://arxiv.org/a)."


def test_the_kernel_runs_without_the_unencrypted_tcp_warning(tmp_path, capfd):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(PROFILE)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, tmp_path / "tiny.ipynb")
    execute(tmp_path / "tiny.ipynb", tmp_path / "ran.ipynb", {"PROFILE": "smoke"}, timeout=60)
    assert nbformat.read(tmp_path / "ran.ipynb", 4).cells[-1].outputs[0].text == "smoke\n"
    assert "without encryption" not in capfd.readouterr().err


WIDGET_NOTEBOOKS = [path for path in NOTEBOOKS if has_widgets(nbformat.read(path, 4))]


@pytest.mark.parametrize("notebook", runs_of(WIDGET_NOTEBOOKS, "smoke"))
def test_every_widget_responds_in_jupyterlab(notebook, browser, executed):
    seen = executed(notebook, "smoke").lab
    assert seen is not None and seen.interactions, f"{notebook.name}: no widget control was found in JupyterLab"
    for interaction in seen.interactions:
        assert not interaction.tracebacks, f"{interaction.control}: {interaction.tracebacks[0][-1500:]}"
        assert interaction.changed, f"{interaction.control}: its widget's output did not change"


def has_tasks(path: Path) -> bool:
    return any("implement" in cell.metadata.get("tags", []) for cell in nbformat.read(path, 4).cells)


def task_verdicts(path: Path) -> list[str]:
    """What each `check_task(...)` cell of an executed notebook said (printed, or shown as a box
    whose plain text is kept beside its HTML)."""
    return ["".join(output.get("text", "") or output.get("data", {}).get("text/plain", "") for output in cell.outputs)
            for cell in nbformat.read(path, 4).cells if cell.cell_type == "code" and "check_task(" in cell.source]


TASK_NOTEBOOKS = [path for path in NOTEBOOKS if has_tasks(path)]


@pytest.mark.parametrize("notebook", runs_of(TASK_NOTEBOOKS, "smoke"))
def test_the_teachers_answer_to_every_task_passes_its_check(notebook, executed):
    verdicts = task_verdicts(executed(notebook, "smoke").path)
    assert verdicts and all(": passed all" in verdict for verdict in verdicts), verdicts


@pytest.fixture(scope="session")
def student_edition(tmp_path_factory) -> Path:
    """The class edition (tools/make_student.py --short), written once per worker: the student
    edition less its optional sections, whose code the smoke runs of the teacher's edition run
    (tests/test_tools.py checks that neither edition reads a name only the cells it leaves out bind)."""
    from make_student import main as make_student

    folder = tmp_path_factory.mktemp("class")
    make_student(["--short", "--out", str(folder), *map(str, TASK_NOTEBOOKS)])
    return folder


@pytest.mark.parametrize("notebook", runs_of(TASK_NOTEBOOKS, "student"))
def test_the_class_edition_runs_to_the_end_with_every_stub_reported(notebook, student_edition, executed):
    verdicts = task_verdicts(executed(student_edition / notebook.name, "smoke", in_browser=False).path)
    assert verdicts and all("not implemented yet; the notebook goes on with" in v for v in verdicts), verdicts


@pytest.mark.parametrize("notebook", runs_of(TASK_NOTEBOOKS, "student"))
def test_the_class_edition_shows_no_fast_code_before_the_learners_function_passes(notebook, student_edition, executed):
    ran = nbformat.read(executed(student_edition / notebook.name, "smoke", in_browser=False).path, 4)
    printed = [output.get("text", "") or output.get("data", {}).get("text/plain", "")
               for cell in ran.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not any("how the course computes it, fast" in text for text in printed)


def test_the_learners_function_is_the_one_the_notebook_runs_on(tmp_path, executed):
    """Notebook 09 with a learner's wanda_mask that passes its check and counts its calls: the
    notebook's prunings call it far more often than the check's cases do, so its numbers are the
    learner's function's."""
    notebook = next(path for path in NOTEBOOKS if path.name.startswith("09_"))
    source = nbformat.read(notebook, 4)
    implement = next(cell for cell in source.cells if "implement" in cell.metadata.get("tags", []))
    implement.source = (
        "CALLS = []\n\n"
        "def wanda_mask(weight, input_norms, sparsity):\n"
        '    """The learner\'s: the scores of each row sorted, the lowest dropped, each call recorded."""\n'
        "    CALLS.append(1)\n"
        "    scores = weight.abs() * input_norms\n"
        "    mask = torch.ones_like(weight, dtype=torch.bool)\n"
        "    for row in range(weight.shape[0]):\n"
        "        mask[row, scores[row].argsort()[:int(sparsity * weight.shape[1])]] = False\n"
        "    return mask\n")
    source.cells.append(nbformat.v4.new_code_cell('print("calls:", len(CALLS), "passed:", lesson.TASK.passed)'))
    changed = tmp_path / notebook.name
    nbformat.write(source, changed)
    said = nbformat.read(executed(changed, "smoke", in_browser=False).path, 4).cells[-1].outputs[0]["text"]
    calls, passed = re.fullmatch(r"calls: (\d+) passed: (\w+)\n", said).groups()
    cases = len(lesson_module("09").TASK.cases())
    assert passed == "True" and int(calls) > 2 * cases, said


def test_the_pages_of_a_run_open_from_disk(tmp_path, browser, executed):
    """The site of a smoke run: every link of the index opens a page, each notebook page shows
    its figures, and no page is empty."""
    from course_utils.harness.site import build_site

    runs = []
    for notebook in NOTEBOOKS:
        execution = executed(notebook, "smoke")
        shutil.copy(execution.path, tmp_path / notebook.name)
        shutil.copy(execution.results, tmp_path / f"{notebook.stem}.json")
        runs.append(dict(notebook=notebook.stem, status="ok", seconds=60.0))
    write_summary(tmp_path, runs)
    index = build_site(tmp_path)
    missing = re.findall(r"<td>([^<]+)</td><td>not in this run</td>", index.read_text())
    assert missing == ["ResNet-18, criteria in tiers"], missing  # each highlight is a saved key (06's smoke: VGG-16 only)
    figures = {path.stem: sum("image/png" in output.get("data", {}) for cell in nbformat.read(path, 4).cells
                               for output in cell.get("outputs", []))
               for path in tmp_path.glob("*.ipynb")}
    page = executed.new_page()
    refused = []  # every request off the disk: the pages must need none
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
               else (refused.append(route.request.url), route.abort()))
    page.goto(index.as_uri())
    links = page.locator("a").evaluate_all("links => links.map(link => link.href)")
    assert len(links) == len(NOTEBOOKS)
    for link in links:
        page.goto(link)
        stem = link.rsplit("/", 1)[-1].removesuffix(".html")
        assert page.locator(".jp-Notebook .jp-Cell").count() > 10, f"{stem}: the page is empty"
        assert page.locator(".jp-OutputArea img").count() >= figures[stem] > 0, f"{stem}: figures missing"
        page.wait_for_selector(".MathJax, .MathJax_Display", state="attached", timeout=30_000)  # typeset, offline
    page.close()
    assert refused == [], f"the pages asked the network for {sorted(set(refused))[:5]}"


def test_a_parameter_out_of_range_stops_the_notebook_in_its_first_cells(tmp_path):
    """Notebook 04 with S = NaN looped for ever in its pruning points; now its first code
    cell names the parameter and what is allowed."""
    notebook = next(path for path in NOTEBOOKS if path.name.startswith("04_"))
    with pytest.raises(NotebookFailed) as failed:
        execute(notebook, tmp_path / "ran.ipynb", {"PROFILE": "smoke", "S": float("nan"), "SEED": "abc"},
                timeout=300)
    assert "S = nan: must be a finite number >= -3" in str(failed.value)
    assert failed.value.report.tries == 1


def test_a_parameter_the_notebook_does_not_have_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has no parameter DATASET"):
        execute(NOTEBOOKS[0], tmp_path / "ran.ipynb", {"PROFILE": "smoke", "DATASET": "cifar10"}, timeout=60)
