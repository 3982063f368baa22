"""Each notebook's headline numbers, written as JSON beside the executed notebook.

The main job (`python -m course_utils.run_course`) builds its summary.md from these
files, never by scraping a notebook's printed output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def save_results(path: str | Path | None, notebook: str, profile: str, dataset: str,
                 **headline) -> dict:
    """Write {notebook, profile, dataset, headline} to `path` (skipped when path is None,
    as in an interactive session); returns the record."""
    record = dict(notebook=notebook, profile=profile, dataset=dataset,
                  headline={key: _plain(value) for key, value in headline.items()})
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(record, indent=2))
    return record


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 4)
    return value


def load_results(folder: Path) -> list[dict]:
    """The notebooks' results files in `folder` (<notebook>.json, as save_results writes them)."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("[0-9][0-9]_*.json"))]
