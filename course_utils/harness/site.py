"""A course run as pages to read: `<run>/site/index.html` and one page per executed notebook.

The pages open from disk, with no server, no kernel and no network: nbconvert's HTML
(figures embedded as images, widgets shown through the static figure each notebook draws
after them), its equations typeset by a copy of MathJax 2 in `site/mathjax/` (from the
jupyter-server-mathjax package; nbconvert's default loads MathJax from a CDN, so offline
a page showed raw TeX), and a small index with the course map, each notebook's highlights beside the paper's (`highlights`)
and the run's summary table.
"""

from __future__ import annotations

import html
import re
import shutil
import sys
from pathlib import Path

import mistune
import nbformat

from .highlights import highlights_table
from .results import load_results
from ..storage import read_json

SITE = "site"
MATHJAX = "mathjax"  # site/mathjax/: MathJax 2 with TeX input and HTML-CSS output, about 2.5 MB
MATHJAX_URL = f"{MATHJAX}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
# what the pages never load (accessibility maps, SVG output, translations): 6 of MathJax's 9.6 MB
_MATHJAX_UNUSED = ("a11y", "SVG", "localization", "LICENSE")
# a notebook's link to itself or another (`results/quick/03_x.ipynb`, `03_x.ipynb`), made a link to its page
_NOTEBOOK_LINK = re.compile(r'href="(?:results/\w+/)?(\d\d_\w+)\.ipynb"')


def copy_mathjax(site: Path) -> None:
    """MathJax's files into site/mathjax/, once."""
    import jupyter_server_mathjax

    target = site / MATHJAX
    if not (target / "MathJax.js").exists():
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*_MATHJAX_UNUSED))


def notebook_title(notebook: nbformat.NotebookNode) -> str:
    """The first Markdown heading of a notebook, without its #."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            return cell.source.lstrip().splitlines()[0].lstrip("#").strip()
    return ""


def build_site(run: Path, site: Path | None = None) -> Path:
    """Write `site` (by default run/site/): a page per executed notebook of `run` (a
    `run_course` output folder, or the reference run in notebooks/results/quick/) and
    index.html linking them, with the run's summary.md when it has one. Returns the index."""
    from nbconvert import HTMLExporter

    site = site or run / SITE
    site.mkdir(parents=True, exist_ok=True)
    copy_mathjax(site)
    exporter = HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL)
    statuses = _run_statuses(run) if (run / "runs.json").exists() else _recorded_statuses(run)
    name = f"the run {run.name}" if (run / "runs.json").exists() else f"the recorded {run.name} run"
    rows = []
    for path in sorted(run.glob("[0-9][0-9]_*.ipynb")):
        notebook = _readable_notebook(path)
        if notebook is None:
            continue
        notebook.metadata.pop("widgets", None)  # live widget state would load their JavaScript from a CDN
        try:
            body, _ = exporter.from_notebook_node(notebook)
        except Exception as error:  # noqa: BLE001 (a malformed notebook: skipped, the rest built)
            print(f"skipped {path}: it cannot be turned into a page ({type(error).__name__}: {error})",
                  file=sys.stderr)
            continue
        body = body.replace(f'<script src="{exporter.require_js_url}"></script>', "")  # no page needs it
        body = _NOTEBOOK_LINK.sub(r'href="\1.html"', body)  # a link to a course notebook opens its page
        (site / f"{path.stem}.html").write_text(body, encoding="utf-8")
        status = statuses.get(path.stem, {})
        rows.append(f"<tr><td><a href='{path.stem}.html'>{html.escape(path.stem)}</a></td>"
                    f"<td>{html.escape(notebook_title(notebook))}</td>"
                    f"<td>{html.escape(status.get('status', ''))}</td>"
                    f"<td>{(status.get('seconds') or 0) / 60:.1f} min</td></tr>")
    summary = (run / "summary.md").read_text() if (run / "summary.md").exists() else ""
    summary_html = mistune.create_markdown(plugins=["table"])(summary.split("\n", 1)[-1])
    index = site / "index.html"
    index.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Pruning papers, reproduced: {html.escape(name)}</title>
<style>body {{ font-family: sans-serif; max-width: 75em; margin: 2em auto; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }}</style>
</head><body>
<h1>Pruning papers, reproduced: {html.escape(name)}</h1>
<h2>The course map</h2>
<p>One notebook a paper, executed in this run; each page shows its figures and tables as computed.</p>
<table><tr><th>notebook</th><th>what it reproduces</th><th>status</th><th>wall time</th></tr>
{chr(10).join(rows)}
</table>
<h2>The numbers to look for first</h2>
<p>A few of each notebook's results, as this run recorded them, beside the paper's where it
reports one (its model, data and scale differ from ours: read them as a direction, not a
target). Each notebook's page shows how they were measured.</p>
{highlights_table(load_results(run))}
<h2>Every recorded number</h2>
{summary_html}
</body></html>
""", encoding="utf-8")
    return index


def _readable_notebook(path: Path) -> nbformat.NotebookNode | None:
    """The executed notebook at `path`, or None (said on stderr, naming it) when it cannot be read."""
    try:
        notebook = nbformat.read(path, 4)
        notebook.cells  # noqa: B018 (a JSON object without cells is not a notebook)
        return notebook
    except Exception as error:  # noqa: BLE001 (truncated, empty, not a notebook: skipped, the rest built)
        print(f"skipped {path}: it cannot be read as a notebook ({type(error).__name__})", file=sys.stderr)
        return None


def _run_statuses(run: Path) -> dict:
    """Status and wall time of each notebook of a `run_course` run, from its runs.json."""
    try:
        runs = read_json(run / "runs.json")
        return {r["notebook"]: r for r in runs if isinstance(r, dict) and "notebook" in r}
    except (OSError, ValueError, TypeError) as error:
        print(f"skipped {run / 'runs.json'}: {error}", file=sys.stderr)
        return {}


def _recorded_statuses(run: Path) -> dict:
    """Status and wall time of each notebook of a recorded run, from its results files."""
    return {record["notebook"]: dict(status=f"recorded {record.get('recorded', '')}".strip(),
                                     seconds=record.get("seconds") or 0)
            for record in load_results(run)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description="The pages of a run, to read with no kernel (make site).")
    parser.add_argument("run", nargs="?", type=Path, default=root / "notebooks" / "results" / "quick",
                        help="a run folder (default: the reference run kept in the repo)")
    parser.add_argument("--out", type=Path, default=root / SITE, help="where the pages go (default: site/)")
    arguments = parser.parse_args(argv)
    if not any(arguments.run.glob("[0-9][0-9]_*.ipynb")):
        print(f"no executed notebooks in {arguments.run}: record a run first (make course on a CPU records "
              f"the quick profile there), or name a run folder under runs/", file=sys.stderr)
        return 1
    index = build_site(arguments.run, arguments.out)
    print(f"open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
