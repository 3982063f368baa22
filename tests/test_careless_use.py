"""Issue 43's tour of careless use and hostile files: each case a clear error or a safe, correct
result. Lost work first, then wrong results reported as success, crafted and corrupt files,
and parameters and command lines."""

import copy
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from torch import nn

from course_utils import data, storage
from course_utils.harness import run_course
from course_utils.graph import ModelGraph
from course_utils.plans import group_scores, lowest
from course_utils.scores import deletion_effect, kl_oracle, l1_norm, mean_activation, taylor, thinet
from course_utils.thinet import thinet_prune
from course_utils.votes import filter_gradient_norms
from course_utils.harness.execution import execute
from course_utils.export import export_onnx, onnx_difference, onnx_session
from course_utils.models import build_model
from course_utils.harness.results import load_results, save_results
from course_utils.saving import PrunedFileError, load_pruned, save_pruned
from course_utils.harness.site import build_site
from course_utils.storage import DiskFull, digest
from course_utils.graph import SurgeryError
from course_utils.surgery import mask_filters, remove_filters
from course_utils.harness.sweep import collect, main as sweep
from course_utils.train import evaluate, fit
from test_train import blobs

PROBE = Path(__file__).parent / "fixtures" / "sweep_probe.ipynb"


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# ---------------------------------------------------------------- 1. lost work


def test_two_sweeps_into_one_folder_never_lose_the_first_ones_finished_run(tmp_path):
    """Two sweeps of the same grid 12 s apart: the second's execution child, killed as the
    out-of-memory killer would, once made it delete the first's finished run and put its
    failure in its place. Now the second waits for the run's lock and finds it done."""
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "course_utils.harness.sweep", str(PROBE), "--grid", "X=4", "--set", "PROFILE=smoke",
               "--set", "SLEEP=15", "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: list(out.glob("*.partial-*")), 120)  # the first sweep's run is under way
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert first.wait(180) == 0
    for child in psutil.Process(second.pid).children(recursive=True):  # the second's child, if it has one
        if any("course_utils.harness.execution" in part for part in child.cmdline()):
            child.kill()
    second.wait(180)
    run = next(p for p in out.iterdir() if p.name.startswith("X=4-") and ".partial" not in p.name)
    assert json.loads((run / "run.json").read_text())["status"] == "ok"
    assert json.loads((run / "results.json").read_text())["headline"] == {"double": 8}
    table = pd.read_csv(out / "results.csv")
    assert list(table.status) == ["ok"] and list(table.double) == [8]
    assert not list(out.glob("*.partial-*"))


@pytest.fixture
def finished_sweep(tmp_path):
    out = tmp_path / "sweep"
    assert sweep([str(PROBE), "--grid", "X=1,2", "--set", "PROFILE=smoke", "--out", str(out)]) == 0
    return out


def test_a_damaged_run_json_is_named_moved_aside_and_run_again(finished_sweep, capsys):
    damaged = next(finished_sweep.glob("X=1-*/run.json"))
    damaged.write_text('{"parameters": {"X": 1')  # truncated
    capsys.readouterr()
    assert sweep([str(PROBE), "--grid", "X=1,2", "--set", "PROFILE=smoke", "--out", str(finished_sweep)]) == 0
    printed = capsys.readouterr().out
    assert str(damaged) in printed and "moved aside" in printed
    assert printed.count("finished before, skipped") == 1  # X=2; X=1 ran again
    assert json.loads(damaged.read_text())["status"] == "ok"
    assert (pd.read_csv(finished_sweep / "results.csv").status == "ok").all()


def test_a_damaged_results_json_is_a_failed_row_and_the_run_is_done_again(finished_sweep, capsys):
    damaged = next(finished_sweep.glob("X=2-*/results.json"))
    damaged.write_text("{")
    table = collect(finished_sweep)  # the table says so at once, naming the file
    assert str(damaged) in capsys.readouterr().out
    row = table[table.X == 2].iloc[0]
    assert row.status == "failed" and "results.json was damaged" in row.error
    assert pd.read_csv(finished_sweep / "results.csv").status.tolist().count("failed") == 1
    assert sweep([str(PROBE), "--grid", "X=1,2", "--set", "PROFILE=smoke", "--out", str(finished_sweep)]) == 0
    table = pd.read_csv(finished_sweep / "results.csv")
    assert (table.status == "ok").all() and sorted(table.double) == [2, 4]


@pytest.fixture
def full_disk(monkeypatch):
    """Every file the course writes lands on /dev/full: the kernel's own 'no space left'."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")

    def on_full_disk(dir, prefix, suffix):
        path = Path(dir) / f"{prefix}full{suffix}"
        return os.open("/dev/full", os.O_WRONLY), str(path)
    monkeypatch.setattr(tempfile, "mkstemp", on_full_disk)


def test_results_on_a_full_disk_say_so_once_and_leave_the_old_file_whole(tmp_path, full_disk):
    path = tmp_path / "00_x.json"
    path.write_text('{"notebook": "00_x", "profile": "quick", "dataset": "d", "headline": {"a": 1}}')
    with pytest.raises(DiskFull, match=f"no space left on the disk to write {path}"):
        save_results(path, "00_x", "quick", "d", a=2)
    assert json.loads(path.read_text())["headline"] == {"a": 1}


def test_a_pruned_model_on_a_full_disk_says_so(tmp_path, full_disk):
    model = build_model("vgg16", width=0.125)
    with pytest.raises(DiskFull, match="no space left on the disk to write .*model.pt"):
        save_pruned(tmp_path / "model.pt", model, [], dict(name="vgg16", width=0.125), torch.zeros(1, 3, 32, 32))
    assert not (tmp_path / "model.pt").exists()


def test_results_with_nan_and_infinity_are_strict_json(tmp_path):
    path = tmp_path / "00_x.json"
    save_results(path, "00_x", "quick", "d", accuracy=math.nan, ratio=math.inf, count=3)
    assert json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the file"))
    assert load_results(tmp_path)[0]["headline"] == {"accuracy": None, "ratio": None, "count": 3}


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    """run_course over three stand-in notebooks; the second is interrupted (Ctrl-C) the first time."""
    names = [tmp_path / "nb" / f"0{i}_x{i}.ipynb" for i in range(3)]
    ran = []

    def run_notebook(notebook, out, profile, **parameters):
        ran.append(notebook.stem)
        if notebook.stem == "01_x1" and ran.count("01_x1") == 1:
            raise KeyboardInterrupt
        save_results(out / f"{notebook.stem}.json", notebook.stem, profile, "d", a=1)
        nbformat.write(nbformat.v4.new_notebook(), out / notebook.name)
        return dict(notebook=notebook.stem, status="ok", seconds=1.0, stalled=None)

    monkeypatch.setattr(run_course, "course_notebooks", lambda: names)
    monkeypatch.setattr(run_course, "run_notebook", run_notebook)
    monkeypatch.setattr(run_course, "build_site", lambda out: out / "site" / "index.html")
    return ran


def test_run_course_resumes_an_interrupted_run(tmp_path, fake_notebooks, capsys):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_course.main(["--profile", "smoke", "--out", str(out)])
    assert run_course.main(["--profile", "smoke", "--out", str(out)]) == 0
    assert fake_notebooks == ["00_x0", "01_x1", "01_x1", "02_x2"]  # 00 not run twice
    assert "resuming" in capsys.readouterr().out
    assert [r["notebook"] for r in json.loads((out / "runs.json").read_text())] == ["00_x0", "01_x1", "02_x2"]
    with pytest.raises(SystemExit):  # the same folder, another profile: refused
        run_course.main(["--profile", "quick", "--out", str(out)])
    assert "holds a run of the smoke profile" in capsys.readouterr().err


def test_a_second_run_course_into_a_folder_being_written_is_refused(tmp_path, fake_notebooks, capsys):
    out = tmp_path / "run"
    with storage.exclusive(out / ".run_course"), pytest.raises(SystemExit):
        run_course.main(["--profile", "smoke", "--out", str(out)])
    assert "another run_course is writing" in capsys.readouterr().err and not fake_notebooks


def test_run_course_only_with_nothing_after_it_runs_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_course.main(["--only", "--out", str(tmp_path / "run")])
    assert "expected at least one argument" in capsys.readouterr().err


# ---------------------------------------------------------------- 2. wrong results with success


class Shifted(nn.Module):
    """Two convolutions with an elementwise step between them that maps a removed (zero)
    channel to a nonzero constant; `pad` is the second convolution's padding."""

    def __init__(self, step: str, pad: int):
        super().__init__()
        self.first, self.second = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3, padding=pad, bias=False)
        self.step = step

    def forward(self, x):
        a = self.first(x)
        a = {"sigmoid": lambda: torch.sigmoid(a), "plus one": lambda: a + 1.0, "in place": lambda: a.add_(1.0),
             "one minus": lambda: 1.0 - a}[self.step]()
        return self.second(a)


STEPS = ["sigmoid", "plus one", "in place", "one minus"]


@pytest.mark.parametrize("step", STEPS)
def test_a_constant_a_removed_channel_becomes_is_folded_into_the_next_bias(step):
    model, x = Shifted(step, pad=0).eval(), torch.randn(2, 3, 12, 12)
    pruned = remove_filters(copy.deepcopy(model), x, {"first": [0, 3, 5]})
    masked = mask_filters(copy.deepcopy(model), x, {"first": [0, 3, 5]})
    assert pruned.second.in_channels == 5 and pruned.second.bias is not None
    assert torch.allclose(pruned(x), masked(x), atol=1e-5)


@pytest.mark.parametrize("step", STEPS)
def test_a_constant_that_padding_would_break_is_refused_before_anything_changes(step):
    model, x = Shifted(step, pad=1).eval(), torch.randn(2, 3, 12, 12)
    with pytest.raises(SurgeryError, match="pads with zeros"):
        remove_filters(model, x, {"first": [0]})
    assert model.first.out_channels == 8 and model.second.weight.shape[1] == 8


def test_a_constant_before_a_flatten_and_a_linear_layer_is_folded_too():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)).eval()
    x = torch.randn(3, 3, 6, 6)
    pruned = remove_filters(copy.deepcopy(model), x, {"0": [1, 4]})
    assert torch.allclose(pruned(x), mask_filters(copy.deepcopy(model), x, {"0": [1, 4]})(x), atol=1e-5)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.Conv2d(8, 8, 3, padding=1))
        self.c.weight = self.b.weight  # one tensor, two layers

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x))))).mean((2, 3))


def test_tied_weights_are_refused_rather_than_untied():
    model = Tied()
    with pytest.raises(SurgeryError, match="tied to c"):
        remove_filters(model, torch.randn(1, 3, 8, 8), {"a": [0]})
    assert model.c.weight is model.b.weight and model.b.weight.shape == (8, 8, 3, 3)


@pytest.mark.parametrize("parametrize", [nn.utils.parametrizations.weight_norm, nn.utils.parametrizations.spectral_norm,
                                         nn.utils.weight_norm], ids=["weight_norm", "spectral_norm", "old weight_norm"])
def test_a_parametrized_convolution_is_refused_before_anything_changes(parametrize):
    model = nn.Sequential(parametrize(nn.Conv2d(3, 8, 3)), nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 3, 8, 8)
    before = {name: tensor.shape for name, tensor in model.state_dict().items()}
    with pytest.raises(SurgeryError, match="parametrized"):
        remove_filters(model, x, {"0": [0]})
    assert {name: tensor.shape for name, tensor in model.state_dict().items()} == before
    model(x)  # still runs


@pytest.fixture(scope="module")
def small_vgg():
    return build_model("vgg16", width=0.125).eval()


CIFAR_EMPTY = data.ImageData(data.DATASETS["cifar10"], "train", torch.zeros(0, 3, 32, 32, dtype=torch.uint8),
                             torch.zeros(0, dtype=torch.long), "synthetic")


@pytest.mark.parametrize("call", [
    lambda m: taylor(m, CIFAR_EMPTY), lambda m: mean_activation(m, CIFAR_EMPTY), lambda m: kl_oracle(m, CIFAR_EMPTY),
    lambda m: deletion_effect(m, CIFAR_EMPTY), lambda m: thinet(m, CIFAR_EMPTY),
    lambda m: thinet_prune(ModelGraph(m, torch.zeros(1, 3, 32, 32)), CIFAR_EMPTY, "features.0", 4),
    lambda m: filter_gradient_norms(m, CIFAR_EMPTY), lambda m: evaluate(m, CIFAR_EMPTY),
    lambda m: fit(m, CIFAR_EMPTY, epochs=1, lr=0.1, progress=False)],
    ids=["taylor", "mean_activation", "kl_oracle", "deletion_effect", "thinet", "thinet_prune",
         "filter_gradient_norms", "evaluate", "fit"])
def test_empty_data_is_refused_not_scored_as_nothing(small_vgg, call):
    with pytest.raises(ValueError, match="no images"):
        call(small_vgg)


def test_gradient_norms_over_no_batches_are_refused(small_vgg):
    with pytest.raises(ValueError, match="batches is how many"):
        filter_gradient_norms(small_vgg, blobs(64), batches=0)


@pytest.mark.parametrize("scores, message", [
    ({}, "scores must map each layer"), ({"a": torch.full((16,), math.nan)}, "NaN or infinite"),
    ({"a": torch.rand(4, 4)}, "a 1-D tensor"), ({"a": [0.1, 0.2]}, "a 1-D tensor")])
def test_plans_are_not_made_from_scores_that_say_nothing(scores, message):
    with pytest.raises(ValueError, match=message):
        lowest(scores, 0.5)


# ---------------------------------------------------------------- 3. crafted and corrupt files


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build_model("vgg16", width=0.125)
    path = tmp_path_factory.mktemp("saved") / "model.pt"
    plan = lowest({"features.0": l1_norm(model)["features.0"]}, 0.5)
    remove_filters(model, torch.zeros(1, 3, 32, 32), plan)
    return save_pruned(path, model, [plan], dict(name="vgg16", width=0.125), torch.zeros(1, 3, 32, 32))


def crafted(saved: Path, folder: Path, change) -> Path:
    """A copy of the saved file with `change` applied to its contents and its digest recomputed."""
    stored = torch.load(saved, weights_only=True)
    stored["contents"] = change(stored["contents"])
    stored["sha256"] = digest(stored["contents"])
    path = folder / "crafted.pt"
    torch.save(stored, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda c: {**c, "architecture": {**c["architecture"], "width": 1e6}}, "width multiplier must be"),
    (lambda c: {**c, "input_shape": [3, 100_000, 100_000]}, "input shape"),
    (lambda c: {**c, "architecture": {"name": "gpt-7"}}, "unknown model"),
    (lambda c: {**c, "architecture": {**c["architecture"], "os": "rm -rf"}}, "architecture has os"),
    (lambda c: {**c, "plans": [{"no.such.layer": [0]}]}, "plan 1 of 1 does not apply"),
    (lambda c: {**c, "plans": "all"}, "its plans are not"),
    (lambda c: {**c, "state_dict": [1, 2]}, "not a state dict"),
], ids=["huge-width", "huge-input", "foreign-architecture", "unknown-field", "unknown-layer", "plans-text", "weights"])
def test_a_crafted_pruned_file_is_refused_with_its_name_before_anything_is_built(saved, tmp_path, change, message):
    path = crafted(saved, tmp_path, change)
    started = time.perf_counter()
    with pytest.raises(PrunedFileError, match=message) as refused:
        load_pruned(path)
    assert str(path) in str(refused.value) and time.perf_counter() - started < 10


def test_a_file_whose_contents_are_not_a_record_is_refused(tmp_path):
    torch.save({"contents": "abc", "sha256": "x"}, tmp_path / "abc.pt")
    with pytest.raises(PrunedFileError, match="abc.pt was not written by save_pruned"):
        load_pruned(tmp_path / "abc.pt")


def idx(path: Path, array: np.ndarray, header_shape=None) -> None:
    shape = header_shape or array.shape
    header = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_copy(tmp_path, monkeypatch):
    """An empty data home and a small MNIST-format copy of the test split, to damage."""
    monkeypatch.setenv(storage.DATA_HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(data.DATA_DIRS_ENV, str(tmp_path / "copy"))
    raw = tmp_path / "copy" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = np.random.default_rng(0).integers(0, 255, (100, 28, 28)), np.arange(100) % 10
    idx(raw / "t10k-images-idx3-ubyte.gz", images)
    idx(raw / "t10k-labels-idx1-ubyte.gz", labels)
    return raw, images, labels


@pytest.mark.parametrize("damage, message", [
    (lambda raw, images, labels: idx(raw / "t10k-labels-idx1-ubyte.gz", np.where(labels == 3, 200, labels)),
     "labels range from 0 to 200"),
    (lambda raw, images, labels: idx(raw / "t10k-images-idx3-ubyte.gz", images[:, :14]), r"images of shape \(1, 14, 28\)"),
    (lambda raw, images, labels: idx(raw / "t10k-images-idx3-ubyte.gz", images[:50], header_shape=(100, 28, 28)),
     "header announces"),
    (lambda raw, images, labels: idx(raw / "t10k-labels-idx1-ubyte.gz", labels[:90]), "100 images but 90 labels"),
], ids=["label-200", "wrong-shape", "lying-header", "short-labels"])
def test_a_damaged_mnist_copy_is_refused_naming_its_file_and_never_cached(mnist_copy, damage, message):
    raw, images, labels = mnist_copy
    damage(raw, images, labels)
    with pytest.raises(ValueError, match=message) as refused:
        data.load_dataset("mnist", "test")
    assert str(raw) in str(refused.value)
    assert not list((Path(os.environ[storage.DATA_HOME_ENV]) / "cache").glob("*.pt"))


def results_record(notebook: str) -> str:
    return json.dumps(dict(notebook=notebook, profile="quick", dataset="d", headline={"a": 0.5}))


@pytest.mark.parametrize("bad", ["{", "", "[1, 2]", '"text"'], ids=["truncated", "empty", "list", "string"])
def test_the_site_skips_a_damaged_results_file_or_notebook_naming_it(tmp_path, bad, capsys):
    for stem in ("00_good", "01_bad"):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {stem}")]),
                       tmp_path / f"{stem}.ipynb")
    (tmp_path / "00_good.json").write_text(results_record("00_good"))
    (tmp_path / "01_bad.json").write_text(bad)
    (tmp_path / "02_broken.ipynb").write_text(bad)
    run_course.write_summary(tmp_path, [dict(notebook="00_good", status="ok", seconds=1.0)])
    index = build_site(tmp_path).read_text()
    said = capsys.readouterr().err
    assert "01_bad.json" in said and "02_broken.ipynb" in said
    assert "00_good.html" in index and "01_bad.html" in index and "02_broken" not in index


# ---------------------------------------------------------------- 4. parameters and command lines


@pytest.mark.parametrize("arguments, message", [
    (["--grid", "X=1,2", "--grid", "X=3"], "X is given twice"),
    (["--grid", "X=1", "--set", "X=5"], "X is given twice"),
    (["--grid", "X=1,1"], "repeats a value"),
    (["--grid", "X=1", "--set", "RESULTS_FILE=/tmp/r.json"], "RESULTS_FILE is set by the sweep"),
])
def test_a_sweep_refuses_values_it_would_silently_drop(tmp_path, arguments, message, capsys):
    with pytest.raises(SystemExit):
        sweep([str(PROBE), "--out", str(tmp_path / "sweep"), "--set", "PROFILE=smoke", *arguments])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("timeout", [-5, math.nan, 0, math.inf])
def test_execution_refuses_a_timeout_that_is_no_limit_or_no_time(tmp_path, timeout):
    with pytest.raises(ValueError, match="a positive number"):
        execute(PROBE, tmp_path / "ran.ipynb", {"PROFILE": "smoke"}, timeout=timeout)


def test_execution_never_writes_over_the_notebook_it_runs(tmp_path):
    notebook = tmp_path / "probe.ipynb"
    notebook.write_bytes(PROBE.read_bytes())
    with pytest.raises(ValueError, match="overwrite its source"):
        execute(notebook, tmp_path / "." / "probe.ipynb", {"PROFILE": "smoke"}, timeout=60)
    assert notebook.read_bytes() == PROBE.read_bytes()


@pytest.mark.parametrize("call, error, message", [
    (lambda m: remove_filters(m, torch.zeros(1, 3, 32, 32), 5), SurgeryError, "a plan maps each conv's name"),
    (lambda m: remove_filters(m, torch.zeros(1, 3, 32, 32), [0, 1]), SurgeryError, "a plan maps each conv's name"),
    (lambda m: remove_filters(m, torch.zeros(1, 3, 32, 32), {"features.0": 3}), SurgeryError, "must list filter indices"),
    (lambda m: lowest(l1_norm(m), "0.5"), ValueError, "must be a number in"),
    (lambda m: group_scores(ModelGraph(m, torch.zeros(1, 3, 32, 32)), {"features.0": torch.rand(3)}), ValueError,
     "features.0 has 8 filters but 3 scores"),
    (lambda m: data.load_dataset("mnist", "test", size=2.5), ValueError, "whole, positive number of images"),
    (lambda m: blobs(64).shuffled_parts(True), ValueError, "parts must be a whole number"),
    (lambda m: build_model("vgg16", width=math.inf), ValueError, "width multiplier must be"),
])
def test_a_wrong_argument_is_named_with_what_is_allowed(small_vgg, call, error, message):
    with pytest.raises(error, match=message):
        call(small_vgg)


def test_a_model_without_parameters_exports_and_compares(tmp_path):
    model, x = nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(2, 3, 4, 4)
    session = onnx_session(export_onnx(model, x, tmp_path / "relu.onnx"), threads=1)
    assert onnx_difference(model, session, x) == 0.0
