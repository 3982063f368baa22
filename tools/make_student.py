"""Write the student edition of the course: the notebooks in notebooks/ are the teacher's
edition (with solutions); the student's has, from the same source,

- the cells tagged `solution` removed (nbconvert's TagRemovePreprocessor),
- in every cell tagged `implement`, each function's body replaced by a stub that raises
  NotImplementedError (its signature and docstring kept; found with `ast`, not by text),
- no outputs and no execution counts (nbconvert's ClearOutputPreprocessor).

With --short it writes the class edition: the same, less every section whose heading cell
is tagged `optional` (from that heading to the next `## `), so that a class of about an hour
runs the paper's core and its *Your turn*. Either edition is refused when a cell it keeps
reads a name that only the cells it leaves out bind.

    python tools/make_student.py [--out student] [notebooks/*.ipynb]   (or: make student)
    python tools/make_student.py --short --out class                   (or: make class)

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
OPTIONAL = "optional"  # the tag of a section heading a class may skip
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


def is_heading(cell) -> bool:
    return cell.cell_type == "markdown" and cell.source.startswith("## ")


def in_optional_section(cells) -> list[bool]:
    """For each cell, whether it lies in a section whose heading cell is tagged `optional`."""
    flags, skipping = [], False
    for cell in cells:
        if is_heading(cell):
            skipping = OPTIONAL in cell.metadata.get("tags", [])
        flags.append(skipping)
    return flags


def without_optional_sections(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`notebook` less each section whose heading cell is tagged `optional`, and a note after
    its introduction that names them (an exercise may still point at one)."""
    flags = in_optional_section(notebook.cells)
    left_out = [cell.source.splitlines()[0][3:].strip() for cell, optional in zip(notebook.cells, flags)
                if optional and is_heading(cell)]
    notebook.cells = [cell for cell, optional in zip(notebook.cells, flags) if not optional]
    if left_out:
        notebook.cells.insert(1, nbformat.v4.new_markdown_cell(
            "> **Class edition.** This copy leaves out " + "; ".join(f"*{title}*" for title in left_out)
            + ". An exercise that points at one of them is for after class, in the full notebook "
            "(`make student`)."))
    return notebook


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names the code binds anywhere, names it reads) in one cell's source."""
    bound, read = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return bound, read


def orphaned_names(notebook: nbformat.NotebookNode, short: bool = True) -> dict[str, list[str]]:
    """{name: the first lines of the cells that read it} for every name that only the cells an
    edition leaves out bind (the solution cells; with `short`, the optional sections too): that
    edition would stop at the first such cell."""
    optional = in_optional_section(notebook.cells) if short else [False] * len(notebook.cells)
    code = [(cell, left_out or "solution" in cell.metadata.get("tags", []))
            for cell, left_out in zip(notebook.cells, optional) if cell.cell_type == "code"]
    kept = [cell for cell, left_out in code if not left_out]
    kept_bound = set().union(*(_names(cell.source)[0] for cell in kept))
    only_left_out = set().union(*(_names(cell.source)[0] for cell, left_out in code if left_out)) - kept_bound
    orphans: dict[str, list[str]] = {}
    for cell in kept:
        for name in sorted(_names(cell.source)[1] & only_left_out):
            orphans.setdefault(name, []).append(cell.source.splitlines()[0])
    return orphans


def student_edition(notebook: nbformat.NotebookNode, short: bool = False) -> nbformat.NotebookNode:
    if short:
        notebook = without_optional_sections(notebook)
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
    parser.add_argument("--short", action="store_true",
                        help="the class edition: also without the sections tagged optional")
    arguments = parser.parse_args(argv)
    arguments.out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in arguments.notebooks:
        orphans = orphaned_names(nbformat.read(path, as_version=4), arguments.short)
        if orphans:
            raise SystemExit(f"{path.name}: its {'class' if arguments.short else 'student'} edition would read "
                             f"names only the cells it leaves out bind: {orphans}")
        target = arguments.out / path.name
        nbformat.write(student_edition(nbformat.read(path, as_version=4), arguments.short), target)
        written.append(target)
    edition = "class" if arguments.short else "student"
    print(f"the {edition} edition of {len(written)} notebooks is in {arguments.out}/")
    return written


if __name__ == "__main__":
    main()
