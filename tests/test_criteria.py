import copy

import pytest
import torch
from torch import nn

from course_utils.chain import channel_contributions, links, sampled_contributions
from course_utils.data import DATASETS, ImageData
from course_utils.graph import ModelGraph, SurgeryError, scored_convs, split_model
from course_utils.models import build_model, layer_outputs
from course_utils.plans import (check_ratio, globally_lowest, group_scores, keep_for_parameters, keeping, kept_count,
                                lowest, reducible_scores)
from course_utils.scores import (deletion_effect, kl_oracle, l1_norm, l2_norm, mean_activation, random_scores, taylor,
                                 thinet)
from course_utils.surgery import remove_filters
from course_utils.thinet import sample_terms, thinet_prune, thinet_scaling, thinet_selection
from course_utils.votes import filter_gradient_norms, outlier_votes, voted_filters
from course_utils.metrics import count_parameters
from course_utils.train import evaluate

CRITERIA = [l1_norm, l2_norm, mean_activation, taylor, thinet]


def calibration(n=48):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
    return ImageData(DATASETS["cifar10"], "val", images, torch.arange(n) % 10, "synthetic")


def net_with_a_dead_filter(dead=3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))
    with torch.no_grad():
        model[0].weight[dead] = 0
        model[0].bias[dead] = 0
    return model


@pytest.mark.parametrize("criterion", CRITERIA, ids=lambda c: c.__name__)
def test_a_planted_dead_filter_ranks_last(criterion):
    scores = criterion(net_with_a_dead_filter(dead=3), calibration())
    assert set(scores) == {"0", "2"} and scores["0"].shape == (8,) and scores["2"].shape == (6,)
    assert scores["0"].argmin() == 3 and scores["0"][3] == 0
    assert (scores["0"][torch.arange(8) != 3] > 0).all()


@pytest.mark.parametrize("criterion", [mean_activation, taylor], ids=lambda c: c.__name__)
def test_data_criteria_do_not_depend_on_the_batch_size(criterion):
    model, data = net_with_a_dead_filter(), calibration()
    small, large = criterion(model, data, batch_size=7), criterion(model, data, batch_size=48)
    for name in small:
        assert torch.allclose(small[name], large[name], atol=1e-5)
        assert torch.isclose(small[name].norm(), torch.tensor(1.0))


def test_taylor_leaves_the_model_as_it_found_it():
    model = net_with_a_dead_filter().train()
    before = [p.detach().clone() for p in model.parameters()]
    taylor(model, calibration())
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_random_scores_are_seeded():
    model = net_with_a_dead_filter()
    assert all(torch.equal(random_scores(model, seed=1)[k], random_scores(model, seed=1)[k])
               for k in ("0", "2"))
    assert not torch.equal(random_scores(model, seed=1)["0"], random_scores(model, seed=2)["0"])


def test_lowest_plans_the_smallest_scores_and_surgery_takes_the_plan():
    scores = {"0": torch.tensor([5.0, 1.0, 4.0, 0.5, 3.0, 2.0, 6.0, 7.0]),
              "2": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])}
    plan = lowest(scores, 0.5)
    assert sorted(plan["0"]) == [1, 3, 4, 5] and sorted(plan["2"]) == [0, 1, 2]
    assert lowest(scores, 0.5, layers=["2"]).keys() == {"2"}
    model = remove_filters(net_with_a_dead_filter(), torch.randn(1, 3, 8, 8), plan)
    assert model[0].out_channels == 4 and model[2].out_channels == 3
    assert lowest({"x": torch.tensor([1.0, 2.0])}, 0.99) == {"x": [0]}  # one filter stays


@pytest.mark.parametrize("ratio", [0, 1, -0.2, 1.5])
def test_a_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        check_ratio(ratio)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        lowest({"x": torch.ones(4)}, ratio)


def test_unknown_layers_are_named():
    with pytest.raises(ValueError, match="no scores for"):
        lowest({"x": torch.ones(4)}, 0.5, layers=["y"])


# ---------------------------------------------------------------- oracles (papers 03, 04)


def calibrated(name, width=0.125, channels=3, size=32):
    """A course model at random init whose batch norms hold real statistics, with a sharper
    classifier, so that removing a filter moves its output measurably."""
    torch.manual_seed(0)
    model = build_model(name, width, in_channels=channels)
    images = torch.randn(64, channels, size, size)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: the statistics of this batch
    model.train()
    with torch.no_grad():
        model(images)
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        last.weight *= 10
    return model.eval()


def images_like(channels, size, n=40):
    generator = torch.Generator().manual_seed(1)
    data = torch.randint(0, 256, (n, channels, size, size), generator=generator,
                         dtype=torch.uint8)
    return ImageData(DATASETS["cifar10" if channels == 3 else "mnist"], "val", data,
                     torch.arange(n) % 10, "synthetic")


@pytest.mark.parametrize("name, channels, size", [("vgg16_gap", 3, 32), ("vgg16", 3, 32),
                                                  ("alexnet", 1, 28)])
def test_the_fast_kl_oracle_gives_the_naive_scores(name, channels, size):
    model, data = calibrated(name, channels=channels, size=size), images_like(channels, size)
    fast = kl_oracle(model, data, batch_size=16, images_per_pass=64)
    naive = kl_oracle(model, data, batch_size=40, fast=False)
    assert list(fast) == list(naive) == [link.conv for link in links(model)]
    for layer in naive:
        assert naive[layer].max() > 1e-3, "a layer whose filters change nothing tests nothing"
        assert torch.allclose(fast[layer], naive[layer], atol=1e-5, rtol=1e-4), layer


def test_the_kl_oracle_on_a_learners_divergence_gives_its_own_scores_batched_or_one_filter_at_a_time():
    """Notebook 03 scores with the learner's kl_score: a tensor-returning one runs under vmap,
    one that calls .item() one filter at a time; both give the course's scores, and a wrong
    one (the other order) gives other scores."""
    model, data = calibrated("vgg16_gap", channels=3, size=32), images_like(3, 32)

    def as_tensor(logits, without):
        log_p, log_q = torch.log_softmax(logits, 1), torch.log_softmax(without, 1)
        return (log_p.exp() * (log_p - log_q)).sum(1).mean()

    first = [links(model)[0].conv]  # one layer: the naive oracle is slow by design
    course = kl_oracle(model, data, batch_size=16, images_per_pass=64, layers=first)
    for divergence in (as_tensor, lambda logits, without: as_tensor(logits, without).item()):
        for fast in (True, False):
            theirs = kl_oracle(model, data, batch_size=16, images_per_pass=64, fast=fast, divergence=divergence,
                               layers=first)
            assert all(torch.allclose(theirs[k], course[k], atol=1e-5, rtol=1e-4) for k in course)
    reversed_order = kl_oracle(model, data, batch_size=16, images_per_pass=64, layers=first,
                               divergence=lambda logits, without: as_tensor(without, logits))
    assert not all(torch.allclose(reversed_order[k], course[k], atol=1e-5, rtol=1e-4) for k in course)


def test_the_kl_oracle_ranks_a_planted_dead_filter_last_and_respects_layers():
    model, data = net_with_a_dead_filter(dead=3), calibration()
    scores = kl_oracle(model, data, layers=["0"])
    assert list(scores) == ["0"] and scores["0"].argmin() == 3 and scores["0"][3] < 1e-7
    assert (scores["0"][torch.arange(8) != 3] > 1e-6).all()
    with pytest.raises(ValueError, match="no conv"):
        kl_oracle(model, data, layers=["conv9"])


@pytest.mark.parametrize("name, channels, size", [("vgg16_gap", 3, 32), ("vgg16", 3, 32),
                                                  ("alexnet", 1, 28)])
def test_channel_terms_sum_to_the_consumer_output(name, channels, size):
    model, x = calibrated(name, channels=channels, size=size), torch.randn(3, channels, size, size)
    for link in links(model):
        front, middle, _ = split_model(model, link.cut, link.consumer)
        consumer = model.get_submodule(link.consumer)
        with torch.no_grad():
            channels_out = front(x)
            output = middle(channels_out)
            if consumer.bias is not None:
                output = output - consumer.bias.view(-1, *[1] * (output.dim() - 2))
            terms = channel_contributions(consumer, channels_out, range(link.channels))
            assert torch.allclose(terms.sum(1), output, atol=1e-4), link
            sample, target = sampled_contributions(consumer, channels_out, 7,
                                                   torch.Generator().manual_seed(0))
        assert sample.shape == (3 * 7, link.channels)
        # every sampled target is one of the consumer's actual output values
        gaps = (target[:, None] - output.flatten()[None]).abs().min(1).values
        assert gaps.max() < 1e-4, link


def test_links_refuse_a_residual_network():
    with pytest.raises(SurgeryError, match="plain chain"):
        links(build_model("resnet18", 0.125))


def planted_reconstruction(kept=(1, 4, 7), channels=10, samples=400):
    generator = torch.Generator().manual_seed(0)
    terms = torch.randn(samples, channels, generator=generator)
    weights = torch.tensor([0.5, 1.5, 2.0])
    return terms, terms[:, list(kept)] @ weights, list(kept), weights


def test_thinet_keeps_the_planted_channels_and_recovers_their_weights():
    terms, target, kept, weights = planted_reconstruction()
    order = thinet_selection(terms, target)
    assert sorted(order[:3].tolist()) == kept and sorted(order.tolist()) == list(range(10))
    assert torch.allclose(thinet_scaling(terms[:, kept], target), weights, atol=1e-5)


def test_thinet_selection_is_the_greedy_least_squares_choice_even_with_dead_and_twin_channels():
    generator = torch.Generator().manual_seed(0)
    terms = torch.randn(300, 16, generator=generator, dtype=torch.float64)
    terms[:, 3] = 0  # a channel that never fires
    terms[:, 7] = terms[:, 2]  # two channels with the same terms
    target = terms @ torch.rand(16, generator=generator, dtype=torch.float64) + 0.1 * torch.randn(
        300, generator=generator, dtype=torch.float64)

    def greedy(ridge=1e-8):  # each step: every candidate's fit of the kept set's residual, solved anew
        chosen = []
        for _ in range(terms.shape[1]):
            if chosen:
                kept = terms[:, chosen]
                weights = torch.linalg.solve(kept.T @ kept + ridge * torch.eye(len(chosen), dtype=kept.dtype),
                                             kept.T @ target)
                residual = target - kept @ weights
            else:
                residual = target
            gain = (terms.T @ residual) ** 2 / ((terms ** 2).sum(0) + ridge)
            gain[chosen] = -1
            chosen.append(int(gain.argmax()))
        return chosen

    assert thinet_selection(terms, target).tolist() == greedy()


def test_thinet_scaling_survives_a_dead_channel():
    terms, target, kept, weights = planted_reconstruction()
    terms[:, kept[0]] = 0  # a channel that never fires: singular normal equations
    scaling = thinet_scaling(terms[:, kept], target)
    assert torch.isfinite(scaling).all()
    assert torch.allclose(scaling[1:], weights[1:], atol=0.2)


def test_globally_lowest_takes_the_smallest_scores_and_keeps_a_filter_per_layer():
    scores = {"a": torch.tensor([0.1, 0.9, 0.2]), "b": torch.tensor([0.05, 0.01]),
              "c": torch.tensor([0.5, 0.6])}
    assert globally_lowest(scores, 3) == {"b": [1], "a": [0, 2]}
    plan = globally_lowest(scores, 4)  # b keeps one filter, so the next lowest goes
    assert plan == {"b": [1], "a": [0, 2], "c": [0]}
    for bad in (0, 5):
        with pytest.raises(ValueError, match="every layer keeps"):
            globally_lowest(scores, bad)


def test_thinet_prune_keeps_the_output_when_it_keeps_every_channel():
    model, data = calibrated("vgg16"), images_like(3, 32)
    x = data.tensors()[0][:4]
    with torch.no_grad():
        before = model(x)
    channels = model.features[3].out_channels
    graph = thinet_prune(ModelGraph(model, x[:1]), data, "features.3", keep=channels)
    assert graph.model is model and model.features[3].out_channels == graph.group_of("features.3").channels == channels
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-4)


@pytest.mark.parametrize("layer, consumer", [("features.7", "features.10"),
                                             ("features.40", "classifier.0")])
def test_thinet_scaling_brings_the_next_layer_closer_than_removal_alone(layer, consumer):
    model, data = calibrated("vgg16"), images_like(3, 32)
    x = data.tensors()[0]
    original = layer_outputs(model, x, [consumer])[consumer]
    scaled = copy.deepcopy(model)
    keep = model.get_submodule(layer).out_channels // 2
    graph = ModelGraph(scaled, x[:1])
    terms = sample_terms(graph, graph.link(layer), data, 20, torch.Generator().manual_seed(0))
    kept = thinet_selection(terms, terms.sum(1))[:keep].tolist()  # what thinet_prune keeps, with its seed
    thinet_prune(graph, data, layer, keep, per_image=20)
    assert scaled.get_submodule(layer).out_channels == keep
    removed = [c for c in range(model.get_submodule(layer).out_channels) if c not in kept]
    unscaled = remove_filters(copy.deepcopy(model), x[:1], {layer: removed})
    error_scaled = (layer_outputs(scaled, x, [consumer])[consumer] - original).square().mean()
    error_unscaled = (layer_outputs(unscaled, x, [consumer])[consumer] - original).square().mean()
    assert error_scaled < error_unscaled
    with pytest.raises(ValueError, match="keep must be a whole number"):
        thinet_prune(ModelGraph(scaled, x[:1]), data, layer, 0)


def test_gradient_norms_read_gradients_and_change_nothing():
    model, data = calibrated("vgg16"), images_like(3, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    norms = filter_gradient_norms(model, data, batches=3, batch_size=8)
    assert set(norms) == set(scored_convs(model))
    assert norms["features.0"].shape == (3, model.features[0].out_channels)
    assert (norms["features.0"] > 0).all()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_outlier_votes_find_a_planted_noisy_filter():
    generator = torch.Generator().manual_seed(0)
    rows = torch.rand(10, 16, generator=generator)
    rows[:, 5] += 3  # filter 5's gradient stands out in every mini-batch
    votes = outlier_votes({"conv": rows}, s=1.0)
    assert votes["conv"][5] == 10 and votes["conv"].sum() < 20
    assert voted_filters(votes, s=1.0) == {"conv": [5]}
    assert voted_filters({"conv": torch.zeros(16, dtype=torch.long)}, s=1.0) == {}


def test_a_residual_group_is_scored_by_the_mean_of_its_members():
    model = build_model("resnet18", 0.25)
    x = torch.randn(1, 3, 32, 32)
    scores = random_scores(model, seed=3)
    paper = reducible_scores(ModelGraph(model, x), scores)
    grouped = reducible_scores(ModelGraph(model, x), scores, residual_groups=True)
    assert set(paper) < set(grouped) and all(torch.equal(paper[c], grouped[c]) for c in paper)
    group = ModelGraph(model, x).group_of("stem.0")
    assert torch.allclose(grouped["stem.0"],
                          torch.stack([scores[c] for c in group.convs]).mean(0))
    plan = globally_lowest(grouped, 10)
    remove_filters(model, x, plan)  # a plan over groups is one surgery can take
    assert model(x).shape == (1, 10)


def test_deletion_effect_is_the_accuracy_lost_by_removing_the_group():
    model = net_with_a_dead_filter(dead=3)
    data = calibration()
    scores = deletion_effect(model, data, group_size=1)
    assert scores["0"][3] == 0  # a dead filter: nothing lost, not even loss
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    with torch.no_grad():  # batch-norm shifts that would revive a zeroed conv output
        net[1].bias.uniform_(0.5, 1.5)
        net[4].bias.uniform_(0.5, 1.5)
    scores = deletion_effect(net, data, group_size=2)
    base = evaluate(net, data)
    for conv, group in (("0", [4, 5]), ("3", [0, 1])):
        removed = evaluate(remove_filters(copy.deepcopy(net), data.tensors()[0][:1], {conv: group}),
                           data)
        worse = removed.loss - base.loss
        expected = base.accuracy - removed.accuracy + worse / (1 + abs(worse)) / (2 * len(data))
        assert (scores[conv][group] == scores[conv][group[0]]).all()
        assert abs(worse) > 1e-3 and scores[conv][group[0]].item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="group_size"):
        deletion_effect(net, data, group_size=0)


def test_deletion_effect_on_a_chain_cut_after_the_conv_equals_the_whole_model_run_per_group():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10)).eval()
    with torch.no_grad():
        for norm in (net[1], net[5]):
            norm.bias.uniform_(0.5, 1.5)
    data = calibration()
    whole = deletion_effect(net, data, group_size=3, batch_size=20, fast=False)
    for groups_per_pass in (1, 2, 8):  # chunks that end inside, at and past the last group
        cut = deletion_effect(net, data, group_size=3, batch_size=20, groups_per_pass=groups_per_pass)
        for conv in whole:
            assert torch.allclose(cut[conv], whole[conv], atol=1e-7), (conv, groups_per_pass)
    assert len({round(v, 6) for s in whole.values() for v in s.tolist()}) > 2  # scores that differ
    with pytest.raises(ValueError, match="groups_per_pass"):
        deletion_effect(net, data, groups_per_pass=0)


# ---------------------------------------------------------------- where Taylor is measured


def conv_bn_net():
    """conv-BN-ReLU twice, with batch-norm statistics and shifts far from the identity, so
    that a channel zeroed before its batch norm is not a channel removed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(inplace=True),
                          nn.Conv2d(12, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():
        for norm in (model[1], model[4]):
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.5, 2)
            norm.bias.normal_(0.3, 0.5)
    return model.eval()


def per_image_loss(model, images, labels):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(images), labels, reduction="none")


def spearman(a, b):
    rank = lambda x: x.argsort().argsort().double()
    return torch.corrcoef(torch.stack([rank(a), rank(b)]))[0, 1].item()


def test_taylor_predicts_the_loss_change_of_removing_a_filter_and_before_bn_does_not():
    # measured when written: rank correlation 0.99 and 1.00 after the norm, 0.71 and 0.43 before
    model, data = conv_bn_net(), calibration(64)
    images, labels = data.tensors()
    base = per_image_loss(model, images, labels)
    scores = taylor(model, data)
    graph_input = images[:2]
    for conv, count, norm in (("0", 12, 1), ("3", 8, 4)):
        # truth: the mean over images of |loss change| when the filter is physically removed
        truth = torch.stack([
            (per_image_loss(remove_filters(copy.deepcopy(model), graph_input, {conv: [k]}),
                            images, labels) - base).abs().mean() for k in range(count)])
        # the old placement: activation x gradient at the conv's own output, before its norm
        outputs = {}

        def keep(module, inputs, output):
            output.retain_grad()
            outputs["a"] = output
        hook = model[int(conv)].register_forward_hook(keep)
        model.zero_grad()
        nn.functional.cross_entropy(model(images), labels, reduction="sum").backward()
        hook.remove()
        before_norm = (outputs["a"] * outputs["a"].grad).mean((2, 3)).abs().mean(0).detach()
        assert spearman(scores[conv], truth) > 0.9, conv
        assert spearman(scores[conv], truth) > spearman(before_norm, truth) + 0.2, conv
    model.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- ThiNet's keep count (paper 04)


@pytest.mark.parametrize("channels, keep, expected",
                         [(10, 0.8, 8), (10, 0.7, 7), (10, 0.25, 3), (64, 0.6, 39), (3, 0.1, 1),
                          (16, 1.0, 16)])
def test_kept_count_is_thinets_while_s_below_c_times_r(channels, keep, expected):
    assert kept_count(channels, keep) == expected
    # Algorithm 1 literally: grow S while |S| < C x r
    size = 0
    while size < channels * keep - 1e-9:
        size += 1
    assert kept_count(channels, keep) == max(1, size)


def test_thinet_reaches_exactly_the_parameters_its_keep_share_was_chosen_for():
    model, data = calibrated("vgg16"), images_like(3, 32, n=8)
    example, layers = torch.zeros(1, 3, 32, 32), [link.conv for link in links(model)][:-1]
    initial = count_parameters(model)
    for target in (0.8, 0.5, 0.2):
        keep = keep_for_parameters(ModelGraph(model, example), target, layers)
        planned = count_parameters(remove_filters(copy.deepcopy(model), example,
                                                  keeping(model, keep, layers)))
        pruned = ModelGraph(copy.deepcopy(model), example)
        for name in layers:
            pruned = thinet_prune(pruned, data, name, kept_count(pruned.model.get_submodule(name).out_channels, keep))
        assert count_parameters(pruned.model) == planned <= target * initial
        bigger = keeping(model, min(1.0, keep + 0.02), layers)
        assert count_parameters(remove_filters(copy.deepcopy(model), example, bigger)) > target * initial


# ---------------------------------------------------------------- plans on residual groups


def test_a_per_member_plan_on_a_residual_group_is_refused_and_group_scores_cut_each_group_once():
    model, x = build_model("resnet18", 0.25), torch.randn(1, 3, 32, 32)
    scores = l1_norm(model)
    with pytest.raises(SurgeryError, match="group_scores"):
        remove_filters(copy.deepcopy(model), x, lowest(scores, 0.5))
    graph = ModelGraph(model, x)
    grouped = group_scores(graph, scores)
    assert set(grouped) == {g.convs[0] for g in graph.groups if g.prunable}
    residual = graph.group_of("stem.0")
    assert residual.coupled and len(residual.convs) > 2
    # the group's L1 norm (every weight that goes with a channel of the residual stream) over its members
    weights = torch.cat([model.get_submodule(c).weight.detach().flatten(1) for c in residual.convs], 1)
    assert torch.allclose(grouped["stem.0"], weights.abs().sum(1) / len(residual.convs))
    pruned = remove_filters(copy.deepcopy(model), x, lowest(grouped, 0.5))
    for group in graph.groups:
        if group.prunable:
            assert pruned.get_submodule(group.convs[0]).out_channels == group.channels - group.channels // 2


def test_the_same_channels_named_for_two_members_of_a_group_are_accepted():
    model, x = build_model("resnet18", 0.25), torch.randn(1, 3, 32, 32)
    members = ModelGraph(model, x).group_of("stem.0").convs
    remove_filters(model, x, {members[0]: [0, 1], members[1]: [1, 0]})
    assert model.get_submodule(members[0]).out_channels == model.get_submodule(members[1]).out_channels == 14


def test_on_densenet_every_layer_loses_exactly_its_share():
    model, x = build_model("densenet121", 0.25, image_size=32), torch.randn(1, 3, 32, 32)
    scores = l1_norm(model)
    plan = lowest(group_scores(ModelGraph(model, x), scores), 0.5)
    before = {conv: model.get_submodule(conv).out_channels for conv in plan}
    remove_filters(model, x, plan)
    assert all(model.get_submodule(c).out_channels == n - n // 2 for c, n in before.items())
    assert model(x).shape == (1, 10)


class ResidualBlock(nn.Module):
    """stem conv-BN-ReLU, then a branch conv-BN-ReLU-conv-BN added back to the stem's output:
    the stem and the branch's second conv form one residual group."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                                    nn.Conv2d(5, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.branch(x))


def test_deletion_of_a_residual_channel_deletes_it_from_every_member_of_the_group():
    torch.manual_seed(0)
    model = ResidualBlock().eval()
    with torch.no_grad():
        for norm in (model.stem[1], model.branch[4]):
            norm.bias.uniform_(0.5, 1.5)
    data = calibration()
    scores = deletion_effect(model, data)
    assert torch.equal(scores["stem.0"], scores["branch.3"])
    base = evaluate(model, data)
    for channel in range(6):
        removed = evaluate(remove_filters(copy.deepcopy(model), data.tensors()[0][:1],
                                          {"stem.0": [channel]}), data)
        worse = removed.loss - base.loss
        expected = base.accuracy - removed.accuracy + worse / (1 + abs(worse)) / (2 * len(data))
        assert scores["stem.0"][channel].item() == pytest.approx(expected, abs=1e-6)
    # the group's score is each member's
    grouped = group_scores(ModelGraph(model, data.tensors()[0][:1]), scores)
    assert torch.equal(grouped["stem.0"], scores["stem.0"])


def test_taylor_scores_a_residual_channel_by_removing_it_from_the_whole_group():
    torch.manual_seed(0)
    model = ResidualBlock().eval()
    with torch.no_grad():
        for norm in (model.stem[1], model.branch[1], model.branch[4]):
            norm.running_mean.normal_(0, 0.5)
            norm.bias.normal_(0.3, 0.5)
    data = calibration(64)
    images, labels = data.tensors()
    scores = taylor(model, data)
    assert torch.equal(scores["stem.0"], scores["branch.3"])
    base = per_image_loss(model, images, labels)
    truth = torch.stack([(per_image_loss(remove_filters(copy.deepcopy(model), images[:1], {"stem.0": [k]}),
                                         images, labels) - base).abs().mean() for k in range(6)])
    # measured when written: rank correlation 1.0 with the true loss change of removal
    assert spearman(scores["stem.0"], truth) > 0.9
