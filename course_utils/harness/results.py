"""Each notebook's headline numbers, written as JSON beside the executed notebook.

The main job (`python -m course_utils.harness.run_course`) builds its summary.md from these
files, never by scraping a notebook's printed output. They are strict JSON (a NaN or an
infinity is written as null) and written atomically, so a full disk or a crash never
leaves half a file; a reader skips a damaged one, naming it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from pathlib import Path

from ..storage import read_json, write_json


def save_results(path: str | Path | None, notebook: str, profile: str, dataset: str, *,
                 claims: dict[str, dict] | None = None, highlights=(), **headline) -> dict:
    """Write {notebook, profile, dataset, headline, claims, highlights} to `path` (skipped
    when path is None, as in an interactive session); returns the record. `claims`: what the
    run's `claims.Claims` checked; `highlights`: the notebook's `Highlight`s, the few numbers
    the site shows first."""
    if path is not None and not (isinstance(path, (str, Path)) and str(path).strip()):
        raise ValueError(f"RESULTS_FILE must be a file path or None, got {path!r}")
    record = dict(notebook=notebook, profile=profile, dataset=dataset,
                  headline={key: _plain(value) for key, value in headline.items()},
                  claims=claims or {}, highlights=[asdict(h) for h in highlights])
    if path is not None:
        write_json(record, Path(path))
    return record


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 4)
    return value


def load_results(folder: Path) -> list[dict]:
    """The notebooks' results files in `folder` (<notebook>.json, as save_results writes them);
    a file that is not a results record is skipped with a line naming it."""
    records = []
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.json")):
        try:
            record = read_json(path)
            if not (isinstance(record, dict) and isinstance(record.get("headline"), dict)
                    and isinstance(record.get("notebook"), str)):
                raise ValueError(f"{path} is not a notebook's results record")
        except (OSError, ValueError) as error:
            print(f"skipped {path}: {error}", file=sys.stderr)
            continue
        records.append(record)
    return records
