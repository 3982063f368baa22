"""Write docs/teachers.md: for every notebook, the minutes each section took in the reference
run (papermill's cell durations in notebooks/results/quick/), where its *Your turn* is and the
mistakes its check catches (the task's cases, from the lesson module), and the short path for a
class: the sections `make class` keeps (those whose heading is not tagged `optional`).

    python tools/teachers_page.py          # rewrite docs/teachers.md
    python tools/teachers_page.py --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from course_utils.grading import lesson_module  # noqa: E402
from make_student import OPTIONAL, is_heading  # noqa: E402

PAGE = ROOT / "docs" / "teachers.md"
RECORDED = ROOT / "notebooks" / "results" / "quick"


def section_minutes(notebook: nbformat.NotebookNode) -> list[tuple[str, float]]:
    """(section heading, minutes its code cells ran) in the order of the notebook; the cells
    before the first section count as 'setup'."""
    sections = [["setup", 0.0]]
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            sections.append([cell.source.splitlines()[0][3:].strip(), 0.0])
        elif cell.cell_type == "code":
            sections[-1][1] += cell.metadata.get("papermill", {}).get("duration") or 0.0
    return [(title, seconds / 60) for title, seconds in sections]


def optional_sections(notebook: nbformat.NotebookNode) -> list[str]:
    """The headings a class may skip, in order (tagged `optional`; tools/make_student.py --short drops them)."""
    return [cell.source.splitlines()[0][3:].strip() for cell in notebook.cells
            if is_heading(cell) and OPTIONAL in cell.metadata.get("tags", [])]


def notebook_page(path: Path) -> str:
    number = path.name[:2]
    lines = [f"## {path.stem}", ""]
    recorded = RECORDED / path.name
    source = nbformat.read(path, 4)
    if recorded.exists():
        sections = section_minutes(nbformat.read(recorded, 4))
        total = sum(minutes for _, minutes in sections)
        lines += [f"Minutes per section in the reference run (`quick`, 2 CPU cores; {total:.1f} in all; a section "
                  "that trains a baseline is minutes only on an empty checkpoint cache):", "",
                  "| section | minutes |", "|---|---|"]
        lines += [f"| {title} | {minutes:.1f} |" for title, minutes in sections]
        skipped = optional_sections(source)
        kept = [(title, minutes) for title, minutes in sections if title not in skipped]
        leaves_out = f"leaves out {'; '.join(skipped)}" if skipped else "keeps every section: all are core"
        lines += ["", f"Short path for a class (`make class` writes it; it {leaves_out}): "
                  + " · ".join(title for title, _ in kept)
                  + f"; {sum(minutes for _, minutes in kept):.1f} minutes of compute in the reference run."]
    else:
        lines.append("No reference run yet: record it with `make course PROFILE=quick`.")
    task = getattr(lesson_module(number), "TASK", None)
    if task is not None:
        cases = "; ".join(case.name for case in task.cases())
        lines += ["", f"*Your turn* (`{task.name}`): the check tries the learner's function on {cases}. Its "
                      "message names the case and what is off (a shape, the values on that case, a NaN), never "
                      "the expected values; `show_case(lesson.TASK, i)` prints a case's inputs, and code that "
                      "raises is named by the learner's line. Once it passes, the notebook runs on the "
                      "learner's function."]
    exercises = sum(1 for cell in source.cells if cell.cell_type == "code" and cell.source.startswith("# Solution "))
    lines += ["", f"Exercises: {exercises}, checked by `notebooks/lesson{number}.py` against this run's own "
                  "numbers; an answer is judged correct, close or not yet, three tries, and its worked solution "
                  "follows its answer cell, collapsed."]
    return "\n".join(lines)


def page() -> str:
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return "\n\n".join(["# For teachers", "Each notebook's time, its *Your turn* and a short path through it, "
                        "written by `tools/teachers_page.py` from the reference run and the lesson modules "
                        "(a test keeps it current). The student edition is `make student`.",
                        *map(notebook_page, notebooks)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the page is out of date")
    arguments = parser.parse_args(argv)
    text = page()
    if arguments.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python tools/teachers_page.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
