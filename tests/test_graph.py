"""One graph per model state (issue 44): traced once, passed along, and the one walk that
answers where a channel ends, who reads it, and where a plain chain links it to the next layer."""

import copy
from contextlib import contextmanager
from unittest.mock import patch

import pytest
import torch
import torch.fx

from course_utils.chain import links
from course_utils.data import DATASETS, ImageData
from course_utils.graph import ModelGraph, SurgeryError
from course_utils.models import build_model
from course_utils.plans import globally_lowest, lowest, reducible_scores
from course_utils.reduction import reduce_iteratively
from course_utils.scores import channel_ends, deletion_effect, kl_oracle, l1_norm, taylor, thinet
from course_utils.surgery import remove, remove_filters, thin
from course_utils.thinet import thinet_prune

EXAMPLE = torch.zeros(1, 3, 32, 32)


def images(n=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return ImageData(DATASETS["cifar10"], "train", torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                                                 generator=generator),
                     torch.randint(0, 10, (n,), generator=generator), "random")


@contextmanager
def counted_traces():
    """Counts every torch.fx trace made inside the block."""
    calls = []
    original = torch.fx.Tracer.trace

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)
    with patch.object(torch.fx.Tracer, "trace", counting):
        yield calls


@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_an_iterative_reduction_traces_its_model_once(name):
    model, data = build_model(name, 0.125).eval(), images()
    with counted_traces() as traces:
        run = reduce_iteratively(model, cuts=3, share=0.05, rounds_per_cut=1, rounds=[data], calibration=data,
                                 example_input=EXAMPLE, lr=0.01, batch_size=16)
    assert len(run.cut_before_round) == 3 and len(traces) == 1  # five per round before issue 44


def test_thin_traces_its_model_once():
    with counted_traces() as traces:
        build_model("resnet50", 0.25)
    assert len(traces) == 1


@pytest.mark.parametrize("criterion", [taylor, deletion_effect, kl_oracle, thinet],
                         ids=lambda criterion: criterion.__name__)
def test_a_criterion_given_the_graph_traces_nothing_and_scores_as_given_the_model(criterion):
    model, data = build_model("vgg16", 0.125).eval(), images(16)
    graph = ModelGraph(model, EXAMPLE)
    with counted_traces() as traces:
        from_graph = criterion(graph, data)
    assert not traces
    from_model = criterion(model, data)
    assert all(torch.allclose(from_graph[conv], from_model[conv]) for conv in from_model)


def test_surgery_returns_the_pruned_models_graph_as_a_new_trace_would_find_it():
    model = build_model("resnet18", 0.25).eval()
    graph = ModelGraph(model, EXAMPLE)
    plan = globally_lowest(reducible_scores(graph, l1_norm(model), residual_groups=True), 40)
    with counted_traces() as traces:
        after = remove(graph, plan)
    assert not traces and after.model is model
    fresh = ModelGraph(model, EXAMPLE)
    assert after.summary().equals(fresh.summary())
    assert [(r.module, r.kind) for r in after.readers] == [(r.module, r.kind) for r in fresh.readers]


def test_a_copy_of_the_graph_prunes_a_copy_and_leaves_the_original():
    model = build_model("vgg16", 0.125).eval()
    graph = ModelGraph(model, EXAMPLE)
    before = copy.deepcopy(model.state_dict())
    with counted_traces() as traces:
        pruned = remove(graph.copy(), lowest(l1_norm(model), 0.5)).model
    assert not traces and pruned is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    expected = remove_filters(copy.deepcopy(model), EXAMPLE, lowest(l1_norm(model), 0.5))
    with torch.no_grad():
        assert torch.equal(pruned(EXAMPLE), expected(EXAMPLE))


def test_the_graph_says_where_a_channel_ends_and_who_reads_it():
    vgg = ModelGraph(build_model("vgg16", 0.125), EXAMPLE)
    assert vgg.end("features.0") == "features.1"  # its batch norm: zeroing after it is removing
    assert vgg.consumers("features.0") == ["features.1", "features.3"]
    assert vgg.consumers("features.40") == ["features.41", "classifier.0"]
    resnet = ModelGraph(build_model("resnet18", 0.25), EXAMPLE)
    residual = resnet.group_of("stem.0")
    assert set(resnet.consumers("stem.0")) == set(resnet.consumers(residual.convs[1]))  # one group, one set of readers
    assert "layers.0.conv1" in resnet.consumers("stem.0") and "layers.0.bn2" in resnet.consumers("stem.0")
    assert channel_ends(resnet) == {conv: resnet.end(conv) for conv in resnet.convs}
    alexnet = ModelGraph(build_model("alexnet", 0.25, in_channels=1), torch.zeros(1, 1, 28, 28))
    assert alexnet.end("features.0") == "features.0"  # no batch norm: the conv itself


def test_a_plain_chain_links_each_conv_to_the_next_layer_and_a_residual_model_is_refused():
    vgg = build_model("vgg16", 0.125)
    found = links(ModelGraph(vgg, EXAMPLE))
    assert [link.conv for link in found] == [n for n, m in vgg.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert (found[0].cut, found[0].consumer) == ("features.2", "features.3")  # after BN and ReLU
    assert (found[1].cut, found[1].consumer) == ("features.6", "features.7")  # after the pooling
    assert (found[-1].cut, found[-1].consumer) == ("features.43", "classifier.0")  # before the flatten
    with pytest.raises(SurgeryError, match="plain chain"):
        links(build_model("resnet18", 0.25))


def test_thinet_layer_by_layer_traces_its_model_once():
    model, data = build_model("vgg16", 0.125).eval(), images(8)
    with counted_traces() as traces:
        graph = ModelGraph(model, EXAMPLE)
        for link in links(graph)[:3]:
            graph = thinet_prune(graph, data, link.conv, link.channels // 2)
    assert len(traces) == 1 and model.features[0].out_channels == 4


def test_thin_and_a_plan_on_one_graph_equal_removal_on_a_fresh_trace():
    model = thin(build_model("resnet18", 0.5), 0.5, EXAMPLE)
    assert model.stem[0].out_channels == 16
