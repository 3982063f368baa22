"""Write the student edition of the course: the notebooks in notebooks/ are the teacher's
edition (with solutions); the student's has, from the same source,

- the cells tagged `solution` removed (nbconvert's TagRemovePreprocessor),
- in every cell tagged `implement`, each function's body replaced by a stub that raises
  NotImplementedError (its signature and docstring kept; found with `ast`, not by text),
- no outputs and no execution counts (nbconvert's ClearOutputPreprocessor).

    python tools/make_student.py [--out student] [notebooks/*.ipynb]   (or: make student)

A stub's check then says "not implemented yet" and the notebook runs on with the course's
own implementation, from its lesson module (notebooks/lessonNN.py, installed with the course
as course_lessons).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
STUB = '    raise NotImplementedError("write {name} here")\n'


def stubbed(source: str) -> str:
    """`source` with the body of each top-level function replaced by a NotImplementedError
    stub; everything else (imports, other statements, the docstrings) as it was."""
    lines = source.splitlines(keepends=True)
    functions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    for function in reversed(functions):  # from the bottom, so earlier line numbers hold
        first = function.body[0]
        has_docstring = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
            and isinstance(first.value.value, str)
        keep_until = first.end_lineno if has_docstring else function.body[0].lineno - 1
        lines[keep_until:function.end_lineno] = [STUB.format(name=function.name)]
    return "".join(lines)


def student_edition(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    config = Config()
    config.TagRemovePreprocessor.remove_cell_tags = {"solution"}
    notebook, _ = TagRemovePreprocessor(config=config).preprocess(notebook, {})
    notebook, _ = ClearOutputPreprocessor().preprocess(notebook, {})
    for cell in notebook.cells:
        if cell.cell_type == "code" and "implement" in cell.metadata.get("tags", []):
            cell.source = stubbed(cell.source)
    return notebook


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("*.ipynb")))
    parser.add_argument("--out", type=Path, default=ROOT / "student")
    arguments = parser.parse_args(argv)
    arguments.out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in arguments.notebooks:
        target = arguments.out / path.name
        nbformat.write(student_edition(nbformat.read(path, as_version=4)), target)
        written.append(target)
    print(f"the student edition of {len(written)} notebooks is in {arguments.out}/")
    return written


if __name__ == "__main__":
    main()
