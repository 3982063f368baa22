"""What a careless user hits (issue 31's tour), each now a clear error or a safe result."""

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from course_utils import storage
from course_utils.harness import run_course
from course_utils.chain import links
from course_utils.plans import globally_lowest, lowest
from course_utils.scores import l1_norm
from course_utils.votes import loosening
from course_utils.metrics import measure_latency
from course_utils.models import build_model
from course_utils.graph import SurgeryError
from course_utils.surgery import remove_filters
from course_utils.train import cached_training, checkpoint_path, fit
from course_utils.uncertainty import paired_difference
from test_train import Counter, blobs, tiny_model


@pytest.mark.parametrize("s, epsilon", [(math.nan, 0.25), (1e17, 0.25), (1.0, 1e-20), (1.0, 0.0), (1.0, math.inf)])
def test_loosening_refuses_what_would_loop_for_ever(s, epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        loosening(s, epsilon)


def test_loosening_steps_down_to_its_floor():
    assert loosening(1.0, 0.5) == [1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0]
    assert loosening(-5.0, 0.5) == [-5.0]


@pytest.fixture(scope="module")
def vgg():
    return build_model("vgg16", width=0.25).eval()


@pytest.mark.parametrize("count", [2.5, 316.8, True])
def test_a_count_of_filters_must_be_whole(vgg, count):
    with pytest.raises(ValueError, match="whole number"):
        globally_lowest(l1_norm(vgg), count)


def test_an_empty_list_of_layers_is_not_every_layer(vgg):
    with pytest.raises(ValueError, match="non-empty list"):
        lowest(l1_norm(vgg), 0.5, layers=[])
    with pytest.raises(ValueError, match="non-empty list"):
        links(vgg, layers=[])


@pytest.mark.parametrize("indices, message", [
    ([0.9, 2.7], "whole filter indices"), (["0"], "whole filter indices"), ([True, False], "whole filter indices"),
    (torch.zeros(16, dtype=torch.bool), "boolean mask")])
def test_surgery_refuses_indices_that_are_not_filter_numbers(vgg, indices, message):
    with pytest.raises(SurgeryError, match=message):
        remove_filters(vgg, torch.zeros(1, 3, 32, 32), {"features.0": indices})


def test_surgery_that_fails_changes_nothing(vgg):
    before = {name: tensor.shape for name, tensor in vgg.state_dict().items()}
    last = [n for n, m in vgg.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with pytest.raises(SurgeryError, match="example input"):
        remove_filters(vgg, None, {last: [0, 1]})  # the classifier's columns need the example
    assert {name: tensor.shape for name, tensor in vgg.state_dict().items()} == before


def test_paired_difference_takes_right_or_wrong_not_classes():
    with pytest.raises(ValueError, match="predictions == labels"):
        paired_difference(torch.tensor([3, 7, 1]), torch.tensor([3, 2, 1]))


def test_latency_needs_a_batch():
    with pytest.raises(ValueError, match="at least 1"):
        measure_latency(tiny_model(), torch.zeros(1, 1, 4, 4), batch_size=0)


def test_a_diverging_fit_says_so():
    model = tiny_model()
    with torch.no_grad():  # weights a hundred times too large, at the largest rate allowed
        for parameter in model.parameters():
            parameter.mul_(100)
    with pytest.raises(FloatingPointError, match="lr=10"):
        fit(model, blobs(256), epochs=5, lr=10, batch_size=64, schedule="constant", progress=False)


def test_a_fit_whose_last_step_diverges_is_not_reported_as_a_success():
    """The losses are measured before each step: a last step that blows the weights up was
    returned as a normal history (issue 43). A gradient made infinite at the last step does it."""
    model, steps = tiny_model(), []

    def last_step_explodes(gradient):
        steps.append(1)
        return gradient * math.inf if len(steps) == 4 else gradient
    model[0].weight.register_hook(last_step_explodes)
    with pytest.raises(FloatingPointError, match="weights became infinite or NaN in the last steps"):
        fit(model, blobs(256), epochs=1, lr=0.05, batch_size=64, progress=False)


@pytest.mark.parametrize("arguments, message", [
    (dict(lr=math.inf), "lr must be a number in"), (dict(lr=math.nan), "lr must be a number in"),
    (dict(lr=11), "lr must be a number in"), (dict(lr="0.1"), "lr must be a number in"),
    (dict(epochs=1.5), "epochs must be a whole number"), (dict(epochs=True), "epochs must be a whole number")])
def test_fit_refuses_rates_and_epochs_that_are_not_numbers_it_can_use(arguments, message):
    with pytest.raises(ValueError, match=message):
        fit(tiny_model(), blobs(64), progress=False, **{"epochs": 1, "lr": 0.05, **arguments})


def checkpoint(tmp_path):
    config = dict(model="tiny", lr=0.1)
    cached_training(config, tiny_model, Counter(), tmp_path)
    return config, checkpoint_path(config, tmp_path)


def nan_inside(path):
    """Four bytes of the weights turned into a NaN, the file still a valid archive."""
    stored = torch.load(path, weights_only=True)
    stored["contents"]["state_dict"]["0.weight"].view(-1)[0] = math.nan
    torch.save(stored, path)


@pytest.mark.parametrize("damage", [
    nan_inside,
    lambda path: path.write_bytes(os.urandom(2048)),
    lambda path: path.write_bytes(path.read_bytes()[:200]),
    lambda path: path.write_bytes(b""),
], ids=["nan-weights", "random-bytes", "truncated", "empty"])
def test_a_damaged_checkpoint_is_named_moved_aside_and_retrained(tmp_path, damage, capsys):
    config, path = checkpoint(tmp_path)
    damage(path)
    train = Counter()
    model, _, loaded = cached_training(config, tiny_model, train, tmp_path)
    printed = capsys.readouterr().out
    assert not loaded and train.calls == 1 and str(path) in printed and "moved aside" in printed
    assert path.with_name(path.name + ".corrupt").exists() and torch.isfinite(model[0].weight).all()
    assert cached_training(config, tiny_model, train, tmp_path)[2]  # the rebuilt file loads


def test_two_runs_wanting_one_checkpoint_train_it_once(tmp_path):
    """A sweep's workers or parallel tests asking for the same baseline: one trains, the other waits and loads."""
    config, calls = dict(model="tiny", lr=0.2), []

    def slow_train(model):
        calls.append(1)
        time.sleep(0.5)
        return {"calls": len(calls)}

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: cached_training(config, tiny_model, slow_train, tmp_path), range(2)))
    assert len(calls) == 1 and sorted(loaded for *_, loaded in runs) == [False, True]
    assert torch.equal(runs[0][0][0].weight, runs[1][0][0].weight)


def test_a_killed_writers_temporary_file_is_cleaned_up(tmp_path):
    leftover = tmp_path / ".model.pt.abc.tmp"
    leftover.write_bytes(b"half")
    old = time.time() - 2 * storage.STALE_SECONDS
    os.utime(leftover, (old, old))
    storage.atomic_save({"version": 1}, tmp_path / "model.pt")
    assert not leftover.exists()


def test_a_data_home_that_is_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(storage.DATA_HOME_ENV, str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="COURSE_DATA_HOME"):
        storage.data_home()


@pytest.mark.parametrize("arguments, message", [
    (["--only", "99"], "names no notebook"), (["--profile", "fast"], "unknown profile")])
def test_run_course_refuses_what_runs_nothing(arguments, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        run_course.main([*arguments, "--out", str(tmp_path / "run")])
    assert message in capsys.readouterr().err


def test_a_cache_of_part_of_a_split_is_not_served_once_the_whole_is_there(tmp_path, monkeypatch):
    from course_utils import data

    monkeypatch.setenv(storage.DATA_HOME_ENV, str(tmp_path))
    images, labels, source = data._read("mnist", "test")  # the full local copy
    cache = tmp_path / "cache" / "mnist-test.pt"
    storage.checked_save({"images": images[:3000], "labels": labels[:3000], "source": "a partial copy"}, cache)
    served = data._load_cached("mnist", "test")
    assert len(served[1]) == 10_000 and served[2] == source
    assert len(storage.checked_load(cache)["labels"]) == 10_000  # the cache now holds the whole split
