"""The contributor's checks that .pre-commit-config.yaml runs: ruff, and notebooks stored clean."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

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
