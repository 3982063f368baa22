"""The contributor's checks that .pre-commit-config.yaml runs: ruff, and notebooks stored clean."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from make_student import OPTIONAL, main as make_student, orphaned_names, stubbed  # tools/, on the path (conftest.py)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def store_check(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/store_notebook.py", "--check", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True)


def test_the_stored_notebooks_pass_the_hook_and_an_executed_one_fails_it(tmp_path):
    assert store_check(*NOTEBOOKS).returncode == 0
    dirty = nbformat.read(NOTEBOOKS[0], 4)
    cell = next(c for c in dirty.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" not in c.source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nbformat.write(dirty, tmp_path / "dirty.ipynb")
    failed = store_check(tmp_path / "dirty.ipynb")
    assert failed.returncode == 1 and "outputs stored in the cell starting" in failed.stdout


def test_ruff_finds_nothing_in_the_course():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (make setup installs it)")
    checked = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-3000:]


def test_a_stub_keeps_the_signature_the_docstring_and_the_other_code():
    source = ('import math\n\ndef f(x, y=1):\n    """Doc,\n    two lines."""\n    z = x + y\n    return z\n\n\n'
              'def g(a):\n    return a\nVALUE = 3\n')
    assert stubbed(source) == (
        'import math\n\ndef f(x, y=1):\n    """Doc,\n    two lines."""\n    raise NotImplementedError("write f here")\n'
        '\n\ndef g(a):\n    raise NotImplementedError("write g here")\nVALUE = 3\n')


def test_the_student_edition_has_every_task_stubbed_and_no_solution(tmp_path, capsys):
    written = make_student(["--out", str(tmp_path)])
    assert [path.name for path in written] == [path.name for path in NOTEBOOKS]
    tasks = {}
    for path in written:
        cells = nbformat.read(path, 4).cells
        assert not any("solution" in cell.metadata.get("tags", []) for cell in cells)
        assert not any(cell.get("outputs") or cell.get("execution_count") for cell in cells)
        for cell in cells:
            if "implement" in cell.metadata.get("tags", []):
                for function in ast.parse(cell.source).body:
                    assert isinstance(function, ast.FunctionDef)
                    *docstring, stub = function.body
                    assert len(docstring) == 1 and ast.unparse(stub) == \
                        f"raise NotImplementedError('write {function.name} here')"
                    tasks.setdefault(path.stem[:2], []).append(function.name)
    assert sorted(tasks) == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09"], tasks


def test_the_class_edition_leaves_out_the_optional_sections_and_reads_nothing_they_bind(tmp_path):
    written = make_student(["--short", "--out", str(tmp_path)])
    for source, short in zip(NOTEBOOKS, written):
        cells, kept = nbformat.read(source, 4).cells, nbformat.read(short, 4).cells
        optional = [c.source for c in cells if OPTIONAL in c.metadata.get("tags", [])]
        assert not any(c.source in optional for c in kept)
        if optional:
            assert kept[1].source.startswith("> **Class edition.**") and all(
                heading.splitlines()[0][3:].strip() in kept[1].source for heading in optional)
        assert sum(c.cell_type == "code" and "implement" in c.metadata.get("tags", []) for c in kept) == 1, \
            f"{short.name}: the class edition keeps the Your turn"
    assert sum(len(nbformat.read(path, 4).cells) for path in written) < \
        sum(len(nbformat.read(path, 4).cells) for path in NOTEBOOKS) - 20


def test_a_cell_that_reads_what_only_an_optional_section_binds_is_caught(tmp_path):
    cell = nbformat.v4.new_code_cell
    heading = nbformat.v4.new_markdown_cell("## 2 · Aside", metadata={"tags": [OPTIONAL]})
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## 1 · Core"), cell("import math\nx = 1"),
        heading, cell("def helper(a):\n    return a\naside = helper(x)"),
        nbformat.v4.new_markdown_cell("## 3 · Core again"), cell("print(math.pi, x, aside)"),
        cell("print(aside)", metadata={"tags": ["solution"]})])
    assert orphaned_names(notebook) == {"aside": ["print(math.pi, x, aside)"]}
    assert orphaned_names(notebook, short=False) == {}
    nbformat.write(notebook, tmp_path / "09_aside.ipynb")
    with pytest.raises(SystemExit, match="aside"):
        make_student(["--short", "--out", str(tmp_path / "class"), str(tmp_path / "09_aside.ipynb")])
    notebook.cells[-2].source = "print(math.pi, x)"
    assert orphaned_names(notebook) == {}
    notebook.cells.append(cell("answer = helper(1)", metadata={"tags": ["solution"]}))
    notebook.cells.append(cell("print(answer)"))
    assert orphaned_names(notebook, short=False) == {"answer": ["print(answer)"]}


def test_the_teachers_page_is_current_and_covers_every_notebook():
    from teachers_page import PAGE, main as teachers_page

    assert teachers_page(["--check"]) == 0, "run python tools/teachers_page.py"
    text = PAGE.read_text()
    assert all(f"## {path.stem}" in text for path in NOTEBOOKS)


def test_the_readme_opens_with_what_you_learn_what_you_need_and_the_ways_in():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:45])
    for heading in ("**What you will learn**", "**Before you start**", "## Three ways in"):
        assert heading in first_screen, f"{heading} is not on the README's first screen"
