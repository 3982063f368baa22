"""One-shot sparsity (course_utils.sparsity) on small random layers: Wanda is per-row magnitude
when every input has the same norm; every N:M mask has exactly N zeros in each group of M;
on a layer with correlated inputs SparseGPT reconstructs W X better than Wanda and magnitude at
the same sparsity; a sparsity outside [0, 1), an M that does not divide the width, and an empty
calibration set are refused before anything changes."""

import copy

import pytest
import torch
from torch import nn

from course_utils.sparsity import lowest_mask, magnitude_mask, one_shot, sparsegpt, wanda_mask


def correlated_inputs(tokens=512, features=64, seed=0):
    """Inputs whose features are mixed (correlated) and of very different sizes (outliers)."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features, features, generator=generator) / features ** 0.5 + torch.eye(features)
    scales = torch.ones(features)
    scales[:4] = 20.0  # a few outlier features, as in large language models
    return (torch.randn(tokens, features, generator=generator) @ mixing) * scales


def layer(outputs=32, inputs=64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(outputs, inputs, generator=generator)


def test_wanda_is_per_row_magnitude_when_every_input_norm_is_equal():
    weight = layer()
    assert torch.equal(wanda_mask(weight, torch.full((64,), 3.0), 0.5), magnitude_mask(weight, 0.5))
    assert not torch.equal(wanda_mask(weight, torch.linspace(0.1, 5, 64), 0.5), magnitude_mask(weight, 0.5))


@pytest.mark.parametrize("pattern", [(2, 4), (4, 8), (1, 4)])
def test_every_n_m_mask_has_exactly_n_zeros_in_each_group_of_m(pattern):
    n, m = pattern
    weight, x = layer(), correlated_inputs()
    masks = [magnitude_mask(weight, pattern=pattern), wanda_mask(weight, x.norm(dim=0), pattern=pattern),
             sparsegpt(weight, x.T @ x, pattern=pattern)[1]]
    for mask in masks:
        zeros = (~mask).reshape(weight.shape[0], -1, m).sum(2)
        assert (zeros == n).all()
    pruned = sparsegpt(weight, x.T @ x, pattern=pattern)[0]
    assert ((pruned != 0).reshape(32, -1, m).sum(2) == m - n).all()


def test_sparsity_is_exact_per_row():
    weight = layer()
    for mask in (magnitude_mask(weight, 0.3), wanda_mask(weight, torch.rand(64), 0.3)):
        assert ((~mask).sum(1) == int(0.3 * 64)).all()
    assert (~lowest_mask(weight.abs(), 0.3, per_row=False)).sum() == int(0.3 * weight.numel())


@pytest.mark.parametrize("sparsity, pattern", [(0.5, None), (0.7, None), (None, (2, 4))])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude_on_correlated_inputs(sparsity, pattern):
    weight, x = layer(), correlated_inputs()
    dense_out = x @ weight.T

    def error(w):
        return ((x @ w.T - dense_out) ** 2).sum().item()

    rebuilt, mask = sparsegpt(weight, x.T @ x, sparsity, pattern)
    wanda = weight * wanda_mask(weight, x.norm(dim=0), sparsity, pattern)
    magnitude = weight * magnitude_mask(weight, sparsity, pattern)
    assert error(rebuilt) < error(wanda) < error(magnitude)
    # the update is what SparseGPT adds: the same mask without it reconstructs worse, and no
    # update does better than each row's least-squares fit on its kept inputs
    assert error(rebuilt) < 0.98 * error(weight * mask)
    best = torch.zeros_like(weight)
    for row in range(len(weight)):
        kept = mask[row].nonzero().flatten()
        best[row, kept] = torch.linalg.lstsq(x[:, kept].double(), dense_out[:, row:row + 1].double()).solution.flatten().float()
    assert error(best) <= error(rebuilt) * 1.0001
    assert (rebuilt[~mask] == 0).all() and (~mask).float().mean().item() == pytest.approx(sparsity or 0.5, abs=0.01)


def test_sparsegpt_at_zero_sparsity_keeps_the_layer():
    weight, x = layer(), correlated_inputs()
    rebuilt, mask = sparsegpt(weight, x.T @ x, 0.0)
    assert mask.all() and torch.allclose(rebuilt, weight, atol=1e-4)


@pytest.mark.parametrize("sparsity, pattern, message", [(1.0, None, r"in \[0, 1\)"), (-0.1, None, r"in \[0, 1\)"),
                                                         (None, (2, 5), "not a multiple of M = 5"),
                                                         (None, (4, 4), "0 < N < M"), (0.5, (2, 4), "one of the two")])
def test_bad_sparsity_or_pattern_is_refused_before_anything_changes(sparsity, pattern, message):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        one_shot(model, ["0", "2"], [torch.randn(5, 8)], "wanda", sparsity, pattern)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_empty_calibration_set_is_refused():
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 4))
    for method in ("wanda", "sparsegpt"):
        with pytest.raises(ValueError, match="calibration set is empty"):
            one_shot(model, ["0"], [], method, 0.5)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_one_shot_prunes_each_layer_in_turn_and_keeps_its_masks(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    calibration = [torch.randn(64, 16) for _ in range(3)]
    masks = one_shot(model, ["0", "2"], calibration, method, 0.5)
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight
        assert (weight[~mask] == 0).all() and (~mask).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_a_rule_of_ones_own_prunes_as_the_method_it_computes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    calibration = [torch.randn(20, 16) * torch.linspace(0.1, 4, 16)]
    ours = copy.deepcopy(model)
    masks = one_shot(ours, ["0", "2"], calibration, lambda w, norms, s: wanda_mask(w, norms, s), sparsity=0.5)
    course = copy.deepcopy(model)
    expected = one_shot(course, ["0", "2"], calibration, "wanda", sparsity=0.5)
    assert all(torch.equal(masks[name], expected[name]) for name in expected)
    assert torch.equal(ours[2].weight, course[2].weight)


def test_a_rule_of_ones_own_is_refused_with_a_pattern_or_a_wrong_shape():
    model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ValueError, match="unstructured sparsity, not an N:M pattern"):
        one_shot(model, ["0"], [torch.randn(3, 8)], lambda w, n, s: w != 0, pattern=(2, 4))
    with pytest.raises(ValueError, match="shaped like the weight"):
        one_shot(model, ["0"], [torch.randn(3, 8)], lambda w, n, s: torch.ones(8, dtype=torch.bool), sparsity=0.5)
