"""Surgery over torchvision's whole classification zoo, as a new user would try it.

Every model of `torchvision.models.list_models` with at most 100M parameters (torchvision's
own count), random weights, one small input it accepts: remove 30% of every prunable
group's channels (at random, as many from each group of a grouped convolution) and 30% of
every attention layer's heads whose removal surgery supports, and compare the outputs with
`mask_filters` on the same plan (heads gated). Every model matches (63 of 63 in torchvision
0.29): grouped convolutions, ShuffleNet's branches outside the channel shuffle, and the
transformers' heads and MLP width included.
"""

import copy

import pytest
import torch
import torchvision

from course_utils.plans import lowest
from course_utils.metrics import count_parameters
from course_utils.graph import ModelGraph
from course_utils.heads import heads_refused
from course_utils.surgery import mask_filters, remove_filters

INPUT_SIZE = {"alexnet": 64, "inception_v3": 96, "maxvit_t": 224, "vit_b_16": 224, "vit_b_32": 224}  # else 32
MODELS = [name for name in torchvision.models.list_models(module=torchvision.models)
          if torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"] <= 100e6]


def random_heads(graph, generator) -> dict[str, list[int]]:
    """30% of the heads (at least one, never all) of every attention layer whose heads surgery removes."""
    plan = {}
    for name, count in graph.attentions.items():
        if heads_refused(graph.modules[name]) is None and count > 1:
            cut = min(count - 1, max(1, round(0.3 * count)))
            plan[name] = torch.randperm(count, generator=generator)[:cut].tolist()
    return plan


def prune_like_masking(name: str):
    """('matched', relative error, parameters before, after) or ('refused', the reasons)."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    size = INPUT_SIZE.get(name, 32)
    x = torch.randn(1, 3, size, size)
    graph = ModelGraph(model, x)
    generator = torch.Generator().manual_seed(0)
    scores = {group.convs[0]: torch.rand(group.channels, generator=generator)
              for group in graph.groups if group.prunable}
    plan = {**(lowest(scores, 0.3, graph=graph) if scores else {}), **random_heads(graph, generator)}
    if not plan:
        return "refused", {group.reason for group in graph.groups}
    masked = mask_filters(copy.deepcopy(model), x, plan)
    before = count_parameters(model)
    remove_filters(model, x, plan)
    with torch.no_grad():
        got, expected = model(x), masked(x)
    error = ((got - expected).abs().max() / expected.abs().max().clamp(min=1e-12)).item()
    return "matched", error, before, count_parameters(model)


def test_the_zoo_is_read_as_documented():
    assert len(MODELS) > 50 and "convnext_tiny" in MODELS and "vgg16" not in MODELS  # 138M


@pytest.mark.parametrize("name", MODELS)
def test_every_zoo_model_matches_masking(name):
    outcome, *details = prune_like_masking(name)
    assert outcome == "matched", f"{name}: nothing to prune: {details}"
    error, before, after = details
    assert error < 1e-4, f"{name}: pruned and masked outputs differ by {error:.1e} (relative)"
    assert after < before
    if name.startswith("convnext"):
        # only the blocks' hidden channels go (the stream is normalised by LayerNorms), but
        # the two Linear layers around them hold most of ConvNeXt's parameters
        assert 0.2 < 1 - after / before < 0.3, (before, after)
