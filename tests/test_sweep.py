"""The sweep tool on a probe notebook that saves 2 * X, or fails when told to."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from course_utils.storage import exclusive
from course_utils.harness.sweep import GpuSlots, grid_runs, main, parse_assignment, run_name

PROBE = Path(__file__).parent / "fixtures" / "sweep_probe.ipynb"


def test_a_grid_is_every_combination_with_the_fixed_parameters():
    runs = grid_runs({"X": [1, 2], "SEED": [0, 1, 2]}, {"PROFILE": "smoke"})
    assert len(runs) == 6 and {(r["X"], r["SEED"]) for r in runs} == {
        (x, s) for x in (1, 2) for s in (0, 1, 2)}
    assert all(r["PROFILE"] == "smoke" for r in runs)
    assert len({run_name(r, ["X", "SEED"]) for r in runs}) == 6


def test_a_run_is_named_by_every_parameter_it_gets():
    smoke, quick = {"X": 1, "PROFILE": "smoke"}, {"X": 1, "PROFILE": "quick"}
    assert run_name(smoke, ["X"]) != run_name(quick, ["X"]) and run_name(smoke, ["X"]).startswith("X=1-")
    tags = [run_name({"TAG": tag}, ["TAG"]) for tag in ("a b", "a-b", "a/b")]
    assert len(set(tags)) == 3 and all("/" not in tag for tag in tags)
    assert len(run_name({"TAG": "x" * 5000}, ["TAG"])) < 100  # a file system takes 255 bytes at most


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

    finished = next(out.glob("X=1_FAIL=false-*")) / "sweep_probe.ipynb"
    stamp = finished.stat().st_mtime_ns
    capsys.readouterr()
    assert main(failing) == 1  # resumes: the finished runs are skipped, the failed retried
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 3 and printed.count("failed in") == 3
    assert finished.stat().st_mtime_ns == stamp  # never overwritten
    record = json.loads(next(out.glob("X=2_FAIL=true-*/run.json")).read_text())
    assert record["status"] == "failed" and "planted failure" in record["error"]
    assert not list(out.glob("*.partial*"))


def test_resuming_with_another_fixed_parameter_runs_again(tmp_path, capsys):
    out = tmp_path / "sweep"
    other = out / "X=9-0123abcd.partial-othersweep-00000000"  # another sweep's run in progress
    other.mkdir(parents=True)
    with exclusive(out / ".locks" / "X=9-0123abcd"):  # ... which holds its run's lock
        assert main([str(PROBE), "--grid", "X=1", "--set", "PROFILE=smoke", "--out", str(out)]) == 0
    assert other.exists()  # left to its own sweep
    capsys.readouterr()
    assert main([str(PROBE), "--grid", "X=1", "--set", "PROFILE=shapes", "--out", str(out)]) == 0
    assert "finished before" not in capsys.readouterr().out
    assert sorted(pd.read_csv(out / "results.csv").PROFILE) == ["shapes", "smoke"]  # both rows kept
    assert not other.exists()  # its sweep died (no lock held): the next sweep cleans it up


@pytest.mark.parametrize("arguments, message", [
    (["--grid", "x=1,2"], "has no parameter x"),
    (["--set", "PROFILE=fast"], "unknown profile 'fast'"),
])
def test_a_sweep_refuses_what_the_notebook_cannot_take(tmp_path, arguments, message, capsys):
    with pytest.raises(SystemExit):
        main([str(PROBE), "--out", str(tmp_path / "sweep"), *arguments])
    assert message in capsys.readouterr().err


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main([str(PROBE), "--grid", "X=1", "--set", "PROFILE=smoke", "--out", str(tmp_path / "file")])
    assert "is a file" in capsys.readouterr().err


# ---------------------------------------------------------------- on a Dask cluster


def probe_sweep(out, *extra):
    return [str(PROBE), "--grid", "X=1,2,3", "--grid", "SEED=0,1", "--set", "PROFILE=smoke",
            "--out", str(out), *extra]


def run_folders(out):
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_a_local_cluster_of_two_workers_runs_every_point_once(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(probe_sweep(out, "--jobs", "2")) == 0
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and (table.status == "ok").all() and (table.double == 2 * table.X).all()
    assert "a local cluster of 2 worker(s)" in capsys.readouterr().out
    assert main(probe_sweep(out, "--jobs", "2")) == 0  # a second call runs nothing
    assert capsys.readouterr().out.count("finished before, skipped") == 6


def test_a_worker_killed_mid_run_leaves_nothing_half_done_and_the_run_is_redone(tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "sweep"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        arguments = probe_sweep(out, "--scheduler", cluster.scheduler_address, "--set", "SLEEP=3")
        sweep = threading.Thread(target=lambda: results.append(main(arguments)))
        results = []
        sweep.start()
        deadline = time.monotonic() + 60
        while not list(out.glob("*.partial-*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(out.glob("*.partial-*")), "a run started"
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)  # a worker dies mid-run (its nanny starts a new one)
        sweep.join(timeout=300)
    assert results == [0]
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and (table.status == "ok").all()
    assert run_folders(out) == sorted(table.run) and not list(out.glob("*.partial*"))


def test_a_scheduler_and_a_worker_started_by_hand_take_the_sweep(tmp_path):
    pytest.importorskip("distributed")
    scheduler_file = tmp_path / "scheduler.json"
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                 "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(scheduler_file)])]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        started.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                         address, "--nthreads", "1", "--no-dashboard"]))
        out = tmp_path / "sweep"
        assert main(probe_sweep(out, "--scheduler", address)) == 0
        assert len(pd.read_csv(out / "results.csv")) == 6
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=30)


def test_gpu_slots_give_each_run_its_own_gpus():
    local = GpuSlots(worker_name=1, count=2, environ={})  # worker 1 of a local cluster
    assert local.owned == [2, 3] and local.claim(1) == [2] and local.claim(1) == [3]
    with pytest.raises(RuntimeError, match="not 1 free"):
        local.claim(1)
    local.release([2])
    assert local.claim(1) == [2]
    slurm = GpuSlots(worker_name="tcp://node7:4000", count=2, environ={"CUDA_VISIBLE_DEVICES": "4,5"})
    assert slurm.claim(2) == [4, 5]
    node = GpuSlots(worker_name="gpu-node", count=4, environ={})  # --resources GPU=4, by hand
    assert [node.claim(1) for _ in range(4)] == [[0], [1], [2], [3]]
