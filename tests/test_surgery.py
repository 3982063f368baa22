"""Invariants of layer surgery on the torchvision zoo, the course's models and random nets."""

import copy

import pytest
import torch
import torchvision.models as tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_utils.plans import lowest
from course_utils.scores import l1_norm
from course_utils.metrics import count_flops, count_parameters
from course_utils.models import build_model
from course_utils.graph import ModelGraph, SurgeryError, scored_convs, split_model
from course_utils.surgery import mask_filters, remove_filters, thin

ZOO = {
    "alexnet": (lambda: tvm.alexnet(weights=None, num_classes=10), (3, 64, 64)),
    "vgg16_bn": (lambda: tvm.vgg16_bn(weights=None, num_classes=10), (3, 32, 32)),
    "resnet18": (lambda: tvm.resnet18(weights=None, num_classes=10), (3, 32, 32)),
    "resnet50": (lambda: tvm.resnet50(weights=None, num_classes=10), (3, 32, 32)),
    "densenet121": (lambda: tvm.densenet121(weights=None, num_classes=10), (3, 32, 32)),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(weights=None, num_classes=10), (3, 64, 64)),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(weights=None, num_classes=10), (3, 32, 32)),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(weights=None, num_classes=10), (3, 32, 32)),
    "convnext_tiny": (lambda: tvm.convnext_tiny(weights=None, num_classes=10), (3, 32, 32)),
    "course_alexnet": (lambda: build_model("alexnet", 0.25, in_channels=1), (1, 28, 28)),
    "course_vgg16": (lambda: build_model("vgg16", 0.25), (3, 32, 32)),
    "course_vgg16_gap": (lambda: build_model("vgg16_gap", 0.25), (3, 32, 32)),
    "course_resnet18": (lambda: build_model("resnet18", 0.25), (3, 32, 32)),
}


def randomise_batch_norms(model):
    """Non-trivial running statistics and affine terms, so that slicing them matters, and layer
    scales of order one (ConvNeXt starts its blocks at 1e-6, where removing a block's channel
    changes the output by less than float noise, and the test below could not tell)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
            if isinstance(getattr(module, "layer_scale", None), nn.Parameter):
                module.layer_scale.uniform_(0.5, 1.5)
    return model.eval()


def random_plan(graph, fraction=0.3, seed=0):
    """At least one channel of every prunable group, chosen at random (and as many from each
    group of a grouped convolution)."""
    generator = torch.Generator().manual_seed(seed)
    plan = {}
    for group in graph.groups:
        if group.prunable and group.channels > group.blocks:
            scores = {group.convs[0]: torch.rand(group.channels, generator=generator)}
            plan |= lowest(scores, max(fraction, group.blocks / group.channels), graph=graph)
    return plan


def independent_counts(model, x):
    """Parameters and FLOPs from the layers' shapes alone (2 FLOPs per multiply-add)."""
    params = sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False))
    flops, hooks = [], []

    def conv_flops(module, inputs, output):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * \
            module.kernel_size[1]
        flops.append(2 * output[0].numel() * per_output)

    def linear_flops(module, inputs, output):  # on a flattened vector or every position
        flops.append(2 * module.in_features * output[0].numel())

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_flops))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_flops))
    with torch.no_grad():
        model(x[:1])
    for hook in hooks:
        hook.remove()
    return params, sum(flops)


@pytest.fixture(scope="module", params=list(ZOO))
def pruned_case(request):
    build, shape = ZOO[request.param]
    torch.manual_seed(0)
    original = randomise_batch_norms(build())
    x = torch.randn(4, *shape)
    graph = ModelGraph(original, x)
    plan = random_plan(graph)
    pruned = remove_filters(copy.deepcopy(original), x, plan)
    return request.param, original, pruned, plan, x


def test_pruned_model_equals_original_with_removed_channels_zeroed(pruned_case):
    name, original, pruned, plan, x = pruned_case
    masked = mask_filters(copy.deepcopy(original), x, plan)
    with torch.no_grad():
        expected, got = masked(x), pruned(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    with torch.no_grad():  # and masking really changed the model: the test can fail
        assert not torch.allclose(original(x), expected)


def test_counts_drop_and_equal_an_independent_count(pruned_case):
    name, original, pruned, plan, x = pruned_case
    params, flops = independent_counts(pruned, x)
    assert count_parameters(pruned) == params < count_parameters(original)
    assert count_flops(pruned, x) == flops < count_flops(original, x)


def test_torch_pruning_agrees(pruned_case):
    torch_pruning = pytest.importorskip("torch_pruning")
    name, original, pruned, plan, x = pruned_case
    if any(group.split_by for group in ModelGraph(original, x).groups):
        pytest.skip("Torch-Pruning keeps a grouped convolution's outputs and slices its inputs by "
                    "position within a group: compared on an aligned plan below")
    reference = copy.deepcopy(original)
    dependencies = torch_pruning.DependencyGraph().build_dependency(reference, example_inputs=x)
    modules = dict(reference.named_modules())
    for conv, indices in plan.items():
        prune = (torch_pruning.prune_linear_out_channels if isinstance(modules[conv], nn.Linear)
                 else torch_pruning.prune_conv_out_channels)
        dependencies.get_pruning_group(modules[conv], prune, indices).prune()
    assert count_parameters(reference) == count_parameters(pruned)
    with torch.no_grad():
        expected, got = reference(x), pruned(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_pruned_model_still_trains(pruned_case):
    name, original, pruned, plan, x = pruned_case
    model = copy.deepcopy(pruned).eval()  # fixed batch-norm statistics: only the step acts
    labels = torch.arange(len(x)) % 10
    before = nn.functional.cross_entropy(model(x), labels)
    before.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3 / norm.item())  # a short step
    optimizer.step()
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(x), labels) < before


# ---------------------------------------------------------------- coupling and bookkeeping


def test_a_residual_group_loses_the_same_channels_in_every_member():
    model = build_model("resnet18", 0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    group = ModelGraph(model, x).group_of("stem.0")
    assert {"layers.0.conv2", "layers.1.conv2"} <= set(group.convs)
    kept = [c for c in range(group.channels) if c not in (1, 5)]
    weights = {name: model.get_submodule(name).weight.detach().clone() for name in group.convs}
    remove_filters(model, x, {"layers.0.conv2": [1, 5]})
    for name in group.convs:
        assert torch.equal(model.get_submodule(name).weight, weights[name][kept])
    assert model.layers[0].conv1.in_channels == group.channels - 2


def test_batch_norm_statistics_and_gradients_are_sliced_alike():
    model = randomise_batch_norms(build_model("vgg16", 0.25))
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    conv, bn, following = model.features[0], model.features[1], model.features[3]
    before = (conv.weight.grad.clone(), bn.running_mean.clone(), following.weight.grad.clone())
    remove_filters(model, x, {"features.0": [0, 3]})
    kept = [c for c in range(16) if c not in (0, 3)]
    assert torch.equal(conv.weight.grad, before[0][kept])
    assert torch.equal(bn.running_mean, before[1][kept]) and bn.num_features == 14
    assert torch.equal(following.weight.grad, before[2][:, kept])


def test_channels_reaching_the_output_cannot_be_pruned():
    model = tvm.squeezenet1_1(weights=None, num_classes=10)
    graph = ModelGraph(model, torch.randn(1, 3, 64, 64))
    group = graph.group_of("classifier.1")
    assert not group.prunable and "output" in group.reason
    with pytest.raises(SurgeryError, match="output"):
        remove_filters(model, torch.randn(1, 3, 64, 64), {"classifier.1": [0]})


@pytest.mark.parametrize("build, reducible, with_residual, concatenated", [
    (lambda: build_model("resnet18", 0.25), 8, 12, 0),    # conv1 of each block; + stem/stage groups
    (lambda: tvm.resnet50(weights=None), 33, 37, 0),      # stem, conv1 and conv2 of 16 blocks
    (lambda: tvm.densenet121(weights=None), 58, 58, 62),  # the bottleneck conv of 58 dense layers
    (lambda: tvm.squeezenet1_1(weights=None), 9, 9, 16),  # the stem and 8 squeeze convs
    (lambda: build_model("vgg16", 0.25), 13, 13, 0),
])
def test_the_papers_rule_finds_the_reducible_convs(build, reducible, with_residual, concatenated):
    graph = ModelGraph(build(), torch.randn(1, 3, 32, 32))
    assert len(graph.reducible()) == reducible
    assert len(graph.reducible(residual_groups=True)) == with_residual
    assert sum(g.concatenated for g in graph.groups) == concatenated
    for conv in graph.reducible(residual_groups=True):
        group = graph.group_of(conv)
        assert group.prunable and not group.concatenated
        assert group.coupled == (conv not in graph.reducible())


def test_thin_keeps_a_share_of_every_prunable_group_and_the_outputs_shape():
    model = tvm.resnet50(weights=None, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    before = {g.convs[0]: g.channels for g in ModelGraph(model, x).groups}
    thin(model, 0.25, x)
    after = {g.convs[0]: g.channels for g in ModelGraph(model, x).groups}
    assert after == {conv: max(1, round(c / 4)) for conv, c in before.items()}
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        thin(model, 0, x)


class HardCodedView(nn.Module):
    """Paper 05, Figure 2: the reshape that blocks pruning the last convolution."""

    def __init__(self, flatten_properly=False):
        super().__init__()
        self.flatten_properly = flatten_properly
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1) if self.flatten_properly else x.view(x.size(0), 16 * 2 * 2)
        return self.classifier(x)


def test_a_hard_coded_view_is_refused_with_the_fix():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(SurgeryError, match=r"flatten\(1\)"):
        remove_filters(HardCodedView(), x, {"features.2": [0, 1]})
    model = remove_filters(HardCodedView(flatten_properly=True), x, {"features.2": [0, 1]})
    assert model.classifier.in_features == 14 * 4 and model(x).shape == (2, 10)
    remove_filters(HardCodedView(), x, {"features.0": [0]})  # earlier layers still reducible


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else -self.conv(x)


def test_an_untraceable_module_is_named():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), Untraceable())
    with pytest.raises(SurgeryError, match=r"'1' \(Untraceable\)"):
        ModelGraph(model, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("plan, message", [
    ({"features.9": [0]}, "no convolution named 'features.9'"),
    ({"features.0": [0, 0]}, "repeats"),
    ({"features.0": [16]}, "0 to 15"),
    ({"features.0": list(range(16))}, "every filter"),
])
def test_impossible_plans_say_why(plan, message):
    model = build_model("vgg16", 0.25)
    with pytest.raises(SurgeryError, match=message):
        remove_filters(model, torch.randn(1, 3, 32, 32), plan)
    assert model.features[0].out_channels == 16  # untouched


def test_masking_keeps_shapes_flops_and_parameters():
    model, x = build_model("vgg16", 0.25).eval(), torch.randn(1, 3, 32, 32)
    flops, params = count_flops(model, x), count_parameters(model)
    mask_filters(model, None, {"features.0": [1, 2]})
    assert model.features[0].weight[[1, 2]].abs().sum() == 0
    assert (count_flops(model, x), count_parameters(model)) == (flops, params)


# ---------------------------------------------------------------- random networks


class RandomNet(nn.Module):
    """A stack of blocks, each a plain conv, a residual pair or a two-branch concatenation,
    then a flatten into a linear layer."""

    def __init__(self, blocks, widths, pool):
        super().__init__()
        self.kinds, layers, channels = blocks, [], 3
        for kind, width in zip(blocks, widths):
            if kind == "conv":
                layers.append(nn.Sequential(nn.Conv2d(channels, width, 3, padding=1),
                                            nn.BatchNorm2d(width), nn.ReLU()))
                channels = width
            elif kind == "residual":
                layers.append(nn.Sequential(nn.Conv2d(channels, width, 3, padding=1),
                                            nn.BatchNorm2d(width), nn.ReLU(),
                                            nn.Conv2d(width, channels, 3, padding=1),
                                            nn.BatchNorm2d(channels)))
            else:
                layers.append(nn.ModuleList([nn.Conv2d(channels, width, 1),
                                             nn.Conv2d(channels, width + 1, 3, padding=1)]))
                channels = 2 * width + 1
        self.blocks = nn.ModuleList(layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.head = nn.Linear(channels * pool * pool, 5)

    def forward(self, x):
        for kind, block in zip(self.kinds, self.blocks):
            if kind == "residual":
                x = torch.relu(x + block(x))
            elif kind == "concat":
                x = torch.relu(torch.cat([block[0](x), block[1](x)], 1))
            else:
                x = block(x)
        return self.head(self.pool(x).flatten(1))


@settings(max_examples=25, deadline=None)
@given(blocks=st.lists(st.sampled_from(["conv", "residual", "concat"]), min_size=1, max_size=5),
       widths=st.lists(st.integers(2, 6), min_size=5, max_size=5),
       pool=st.integers(1, 3), fraction=st.floats(0.1, 0.6), seed=st.integers(0, 100))
def test_random_networks_prune_like_masking(blocks, widths, pool, fraction, seed):
    torch.manual_seed(seed)
    model = randomise_batch_norms(RandomNet(blocks, widths, pool))
    x = torch.randn(3, 3, 6, 6)
    graph = ModelGraph(model, x)
    plan = random_plan(graph, fraction, seed)
    masked = mask_filters(copy.deepcopy(model), x, plan)
    pruned = remove_filters(copy.deepcopy(model), x, plan)
    with torch.no_grad():
        expected, got = masked(x), pruned(x)
    assert (got - expected).abs().max() <= 1e-4 * (1 + expected.abs().max())
    assert count_parameters(pruned) == independent_counts(pruned, x)[0]
    assert count_parameters(pruned) < count_parameters(model) or not plan


def test_a_split_model_computes_the_same_as_the_whole():
    model, x = build_model("alexnet", 0.25, in_channels=1).eval(), torch.randn(3, 1, 28, 28)
    front, back = split_model(model, "features.10")
    with torch.no_grad():
        features = front(x)
        assert features.shape[1] == model.features[10].out_channels
        assert torch.allclose(back(features), model(x))
        front, middle, back = split_model(model, "features.5", "classifier.1")
        assert torch.allclose(back(middle(front(x))), model(x))
        assert middle(front(x)).shape == (3, model.classifier[1].out_features)
    with pytest.raises(SurgeryError, match="order"):
        split_model(model, "features.10", "features.5")


def test_a_split_across_a_skip_connection_is_refused():
    with pytest.raises(SurgeryError, match="cannot be cut"):
        split_model(build_model("resnet18", 0.25), "layers.0.conv1")
    with pytest.raises(SurgeryError, match="no module"):
        split_model(build_model("resnet18", 0.25), "layers.9")


def test_convnext_prunes_its_residual_stream_when_its_layer_norms_may_be_sliced():
    torch_pruning = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    model, x = tvm.convnext_tiny(weights=None, num_classes=10).eval(), torch.randn(2, 3, 32, 32)
    refused = [g for g in ModelGraph(model, x).groups if not g.prunable]
    assert len(refused) == 4 and all("LayerNorm" in g.reason and g.coupled for g in refused)
    graph = ModelGraph(model, x, slice_layer_norms=True)  # the four stages' residual streams too
    assert all(g.prunable for g in graph.groups)
    plan = random_plan(graph)
    pruned = remove_filters(copy.deepcopy(model), x, plan, slice_layer_norms=True)
    reference = copy.deepcopy(model)  # Torch-Pruning, the same channels
    scales = [(p, 0) for n, p in reference.named_parameters() if n.endswith("layer_scale")]
    dependencies = torch_pruning.DependencyGraph().build_dependency(
        reference, example_inputs=x, unwrapped_parameters=scales)
    modules = dict(reference.named_modules())
    for name, indices in plan.items():
        prune = (torch_pruning.prune_linear_out_channels if isinstance(modules[name], nn.Linear)
                 else torch_pruning.prune_conv_out_channels)
        dependencies.get_pruning_group(modules[name], prune, indices).prune()
    assert count_parameters(pruned) == count_parameters(reference) < 0.6 * count_parameters(model)
    with torch.no_grad():
        assert torch.allclose(pruned(x), reference(x), atol=1e-5)
    nn.functional.cross_entropy(pruned(x), torch.tensor([1, 2])).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in pruned.parameters())


# ---------------------------------------------------------------- grouped convolutions


def grouped_net():
    """conv -> BN -> a conv of 2 groups of 4 -> BN -> conv -> pool -> linear."""
    return randomise_batch_norms(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)))


@pytest.mark.parametrize("removed, groups_left", [([1, 6], 2), ([0, 1, 2, 3], 1), ([0, 1, 2, 3, 5], 1)])
def test_a_grouped_convolution_loses_its_input_and_output_channels_like_masking(removed, groups_left):
    model, x = grouped_net(), torch.randn(2, 3, 8, 8)
    assert ModelGraph(model, x).group_of("0").split_by == (2,)
    masked = mask_filters(copy.deepcopy(model), x, {"0": removed})
    remove_filters(model, x, {"0": removed})
    assert model[3].groups == groups_left and model[3].in_channels == model[3].out_channels == 8 - len(removed)
    assert model[3].weight.shape[1] == (8 - len(removed)) // groups_left
    with torch.no_grad():
        assert torch.allclose(model(x), masked(x), atol=1e-5)


def test_a_plan_that_unbalances_a_grouped_convolution_is_refused_before_any_change():
    model, x = grouped_net(), torch.randn(2, 3, 8, 8)
    with pytest.raises(SurgeryError, match=r"2 groups of 4; the plan removes \[1, 2\].*graph=graph"):
        remove_filters(model, x, {"0": [0, 4, 5]})
    assert model[0].out_channels == 8 and model[3].groups == 2


def test_lowest_balances_grouped_convolutions_and_rounds_to_a_multiple():
    model, x = grouped_net(), torch.randn(2, 3, 8, 8)
    graph = ModelGraph(model, x)
    scores = {"0": torch.tensor([5., 0, 6, 7, 1, 2, 8, 9])}  # the two lowest both in group 2
    assert lowest(scores, 0.25, graph=graph) == {"0": [1, 4]}  # the lowest of each group
    assert lowest({"0": torch.tensor([5., 6, 7, 8, 0, 1, 2, 9])}, 0.25, graph=graph) == {"0": [0, 4]}
    vgg = build_model("vgg16", 0.25)
    plan = lowest(l1_norm(vgg), 0.3, round_to=8)
    for name, conv in scored_convs(vgg).items():
        kept = conv.out_channels - len(plan.get(name, []))
        assert kept % 8 == 0 and kept >= conv.out_channels * 0.7, (name, kept)
    with pytest.raises(ValueError, match="round_to"):
        lowest(scores, 0.25, round_to=0)
    asked = []
    keep_two = lambda channels, share, unit: asked.append((channels, share, unit)) or 2  # noqa: E731
    assert lowest({"a": torch.arange(6.), "b": torch.arange(4.)}, 0.5, round_to=3, kept=keep_two) == \
        {"a": [0, 1, 2, 3], "b": [0, 1]}  # the layers keep what the given count says, the lowest go
    assert asked == [(6, 0.5, 3), (4, 0.5, 3)]


def test_torch_pruning_agrees_on_a_grouped_convolution_when_every_group_loses_the_same_positions():
    """Torch-Pruning 1.6 slices a grouped conv's inputs by their position within a group (one
    choice for all groups) and keeps its outputs; given the same channels at the grouped
    conv's outputs too, it must build our model."""
    torch_pruning = pytest.importorskip("torch_pruning")
    model, x = grouped_net(), torch.randn(2, 3, 8, 8)
    ours = remove_filters(copy.deepcopy(model), x, {"0": [1, 5]})
    reference = copy.deepcopy(model)
    dependencies = torch_pruning.DependencyGraph().build_dependency(reference, example_inputs=x)
    for conv in (reference[0], reference[3]):
        dependencies.get_pruning_group(conv, torch_pruning.prune_conv_out_channels, [1, 5]).prune()
    assert count_parameters(reference) == count_parameters(ours)
    with torch.no_grad():
        assert torch.allclose(reference(x), ours(x), atol=1e-5)
