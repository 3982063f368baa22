"""A course run as pages to read: `<run>/site/index.html` and one page per executed notebook.

The pages open from disk, with no server and no kernel: nbconvert's HTML (figures embedded
as images, widgets shown through the static figure each notebook draws after them) and a
small index with the course map and the run's summary table.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import mistune
import nbformat

SITE = "site"


def notebook_title(notebook: nbformat.NotebookNode) -> str:
    """The first Markdown heading of a notebook, without its #."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            return cell.source.lstrip().splitlines()[0].lstrip("#").strip()
    return ""


def build_site(run: Path) -> Path:
    """Write run/site/: a page per executed notebook of `run` (a `run_course` output
    folder) and index.html linking them, with the run's summary.md. Returns the index."""
    from nbconvert import HTMLExporter

    site = run / SITE
    site.mkdir(exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    statuses = {r["notebook"]: r for r in json.loads((run / "runs.json").read_text())} \
        if (run / "runs.json").exists() else {}
    rows = []
    for path in sorted(run.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, 4)
        body, _ = exporter.from_notebook_node(notebook)
        (site / f"{path.stem}.html").write_text(body, encoding="utf-8")
        status = statuses.get(path.stem, {})
        rows.append(f"<tr><td><a href='{path.stem}.html'>{html.escape(path.stem)}</a></td>"
                    f"<td>{html.escape(notebook_title(notebook))}</td>"
                    f"<td>{html.escape(status.get('status', ''))}</td>"
                    f"<td>{status.get('seconds', 0) / 60:.1f} min</td></tr>")
    summary = (run / "summary.md").read_text() if (run / "summary.md").exists() else ""
    summary_html = mistune.create_markdown(plugins=["table"])(summary.split("\n", 1)[-1])
    index = site / "index.html"
    index.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Pruning papers, reproduced: {html.escape(run.name)}</title>
<style>body {{ font-family: sans-serif; max-width: 75em; margin: 2em auto; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }}</style>
</head><body>
<h1>Pruning papers, reproduced: the run {html.escape(run.name)}</h1>
<h2>The course map</h2>
<p>One notebook a paper, executed in this run; each page shows its figures and tables as computed.</p>
<table><tr><th>notebook</th><th>what it reproduces</th><th>status</th><th>wall time</th></tr>
{chr(10).join(rows)}
</table>
<h2>Summary</h2>
{summary_html}
</body></html>
""", encoding="utf-8")
    return index
