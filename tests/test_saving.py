"""A pruned model saved as architecture + plans + weights, rebuilt by the same surgery."""

import os

import pytest
import torch

from course_utils.graph import ModelGraph
from course_utils.plans import globally_lowest, reducible_scores
from course_utils.scores import l1_norm
from course_utils.metrics import count_parameters
from course_utils.models import build_model
from course_utils.saving import PrunedFileError, load_pruned, save_pruned
from course_utils.surgery import remove_filters

EXAMPLE = torch.randn(4, 3, 32, 32)


def pruned(name, rounds=1):
    """A model of `name` at width 0.25 with random batch-norm statistics, cut `rounds` times."""
    architecture = dict(name=name, width=0.25)
    model = build_model(**architecture)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2)
    model.eval()
    plans = []
    for _ in range(rounds):
        scores = reducible_scores(ModelGraph(model, EXAMPLE), l1_norm(model))
        plans.append(globally_lowest(scores, round(0.2 * sum(map(len, scores.values())))))
        remove_filters(model, EXAMPLE, plans[-1])
    return model, plans, architecture


@pytest.mark.parametrize("name, rounds", [("resnet18", 1), ("squeezenet1_1", 1), ("vgg16", 2)],
                         ids=["residual", "concatenating", "two-rounds"])
def test_a_saved_pruned_model_loads_with_the_same_outputs_and_size(tmp_path, name, rounds):
    model, plans, architecture = pruned(name, rounds)
    path = save_pruned(tmp_path / "model.pt", model, plans, architecture, EXAMPLE)
    loaded = load_pruned(path)
    assert count_parameters(loaded) == count_parameters(model) < count_parameters(build_model(**architecture))
    with torch.no_grad():
        assert torch.allclose(loaded(EXAMPLE), model(EXAMPLE), atol=1e-5)


def test_plans_that_do_not_rebuild_the_model_are_refused_before_writing(tmp_path):
    model, plans, architecture = pruned("resnet18")
    with pytest.raises(PrunedFileError, match="do not fit"):
        save_pruned(tmp_path / "model.pt", model, [], architecture, EXAMPLE)
    assert not (tmp_path / "model.pt").exists()


def tampered(path):
    stored = torch.load(path, weights_only=True)
    first = next(iter(stored["contents"]["state_dict"]))
    stored["contents"]["state_dict"][first].view(-1)[0] += 1
    torch.save(stored, path)


def wrong_architecture(path):
    stored = torch.load(path, weights_only=True)
    stored["contents"]["architecture"]["width"] = 0.5
    stored["sha256"] = __import__("course_utils.storage", fromlist=["digest"]).digest(stored["contents"])
    torch.save(stored, path)


@pytest.mark.parametrize("damage, message", [
    (tampered, "checksum"),
    (wrong_architecture, "do not fit"),
    (lambda path: path.write_bytes(os.urandom(1000)), "cannot be read"),
    (lambda path: path.write_bytes(path.read_bytes()[:300]), "cannot be read"),
    (lambda path: torch.save({"state_dict": {}}, path), "not written by save_pruned"),
    (lambda path: torch.save(build_model("vgg16", width=0.25), path), "cannot be read"),  # a pickled module
], ids=["tampered", "other-architecture", "random-bytes", "truncated", "foreign", "pickled-module"])
def test_a_damaged_or_foreign_file_is_refused_with_its_name(tmp_path, damage, message):
    model, plans, architecture = pruned("resnet18")
    path = save_pruned(tmp_path / "model.pt", model, plans, architecture, EXAMPLE)
    damage(path)
    with pytest.raises(PrunedFileError, match=message) as error:
        load_pruned(path)
    assert str(path) in str(error.value)
