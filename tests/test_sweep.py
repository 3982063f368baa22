"""The sweep tool on a probe notebook that saves 2 * X, or fails when told to."""

import json
from pathlib import Path

import pandas as pd
import pytest

from course_utils.sweep import grid_runs, main, parse_assignment, run_name

PROBE = Path(__file__).parent / "fixtures" / "sweep_probe.ipynb"


def test_a_grid_is_every_combination_with_the_fixed_parameters():
    runs = grid_runs({"X": [1, 2], "SEED": [0, 1, 2]}, {"PROFILE": "smoke"})
    assert len(runs) == 6 and {(r["X"], r["SEED"]) for r in runs} == {
        (x, s) for x in (1, 2) for s in (0, 1, 2)}
    assert all(r["PROFILE"] == "smoke" for r in runs)
    assert len({run_name(r, ["X", "SEED"]) for r in runs}) == 6


@pytest.mark.parametrize("text, grid, expected", [
    ("SEED=0,1,2", True, ("SEED", [0, 1, 2])),
    ("TARGETS=[[0.3], [0.5, 0.7]]", True, ("TARGETS", [[0.3], [0.5, 0.7]])),
    ("PROFILE=smoke", False, ("PROFILE", "smoke")),
    ("LR=0.01", False, ("LR", 0.01)),
])
def test_values_are_read_as_json_or_text(text, grid, expected):
    assert parse_assignment(text, grid) == expected


@pytest.mark.parametrize("text", ["SEED", "=1", "2X=1"])
def test_a_malformed_assignment_is_refused(text):
    with pytest.raises(ValueError, match="NAME=value"):
        parse_assignment(text, grid=False)


def test_a_sweep_collects_results_records_a_failure_and_resumes(tmp_path, capsys):
    out = tmp_path / "sweep"
    arguments = [str(PROBE), "--grid", "X=1,2,3", "--set", "PROFILE=smoke", "--out", str(out),
                 "--jobs", "2", "--plot", "double"]
    failing = arguments + ["--grid", "FAIL=false,true"]  # the probe raises where FAIL is true
    assert main(failing) == 1  # three runs fail (FAIL=true), three finish
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6
    done = table[table.status == "ok"]
    assert sorted(done.X) == [1, 2, 3] and (done.double == 2 * done.X).all()
    failed = table[table.status == "failed"]
    assert len(failed) == 3 and failed.error.str.contains("planted failure").all()
    assert (out / "plot.png").exists()

    finished = out / "X=1_FAIL=false" / "sweep_probe.ipynb"
    stamp = finished.stat().st_mtime_ns
    capsys.readouterr()
    assert main(failing) == 1  # resumes: the finished runs are skipped, the failed retried
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 3 and printed.count("failed in") == 3
    assert finished.stat().st_mtime_ns == stamp  # never overwritten
    record = json.loads((out / "X=2_FAIL=true" / "run.json").read_text())
    assert record["status"] == "failed" and "planted failure" in record["error"]
    assert not list(out.glob("*.partial"))
