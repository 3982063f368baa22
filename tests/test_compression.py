import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import nn

from course_utils.compression import (compression_rate, initial_centroids, kmeans_1d,
                                      magnitude_prune, make_pruning_permanent, pack_indices,
                                      packed_bytes, share_weights, shared_gradient_step,
                                      unpack_indices)


def bimodal(n=4000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    peaks = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    return (peaks + 0.2 * torch.randn(n, generator=generator)).double()


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


@pytest.mark.parametrize("init", ["forgy", "density", "linear"])
def test_kmeans_agrees_with_scikit_learn(init):
    values = bimodal()
    start = initial_centroids(values, 8, init, torch.Generator().manual_seed(1))
    ours, assignment = kmeans_1d(values, start, iterations=300)
    reference = KMeans(8, init=start.numpy().reshape(-1, 1), n_init=1, max_iter=300, tol=0)
    reference.fit(values.numpy().reshape(-1, 1))
    assert np.allclose(np.sort(reference.cluster_centers_.ravel()), ours.numpy(), atol=1e-6)
    distances = (values[:, None] - ours[None, :]).abs()
    assert torch.equal(distances.argmin(1), assignment)  # every value sits in its nearest cluster


def test_the_three_initialisations_as_the_paper_describes_them():
    values = bimodal()
    linear = initial_centroids(values, 8, "linear")
    assert torch.allclose(linear, torch.linspace(values.min().item(), values.max().item(), 8,
                                                 dtype=torch.float64))
    density = initial_centroids(values, 8, "density")
    below = (values[:, None] < density[None, :]).double().mean(0)
    assert torch.allclose(below, (torch.arange(8) + 0.5).double() / 8, atol=0.01)  # even CDF steps
    near_peaks = lambda c: int(((c.abs() - 1).abs() < 0.3).sum())
    assert near_peaks(density) > near_peaks(linear)  # denser around the two peaks
    forgy = initial_centroids(values, 8, "forgy", torch.Generator().manual_seed(0))
    assert all((values == c).any() for c in forgy)  # k observations of the data


def test_shared_weights_take_at_most_2_to_the_bits_values_and_keep_pruned_zeros():
    model = small_net()
    magnitude_prune(model, quality=0.5)
    make_pruning_permanent(model)
    zeros = {n: p == 0 for n, p in model.named_parameters() if n.endswith("weight")}
    x = torch.randn(4, 3, 8, 8)
    before = model(x)
    shared = share_weights(model, bits=3, init="linear")
    for name, parameter in model.named_parameters():
        if name.endswith("weight"):
            assert parameter[~zeros[name]].unique().numel() <= 8
            assert (parameter[zeros[name]] == 0).all()
    assert set(shared) == {"0", "3"}
    assert (model(x) - before).abs().max() < 0.5 * before.abs().max()


def test_sharing_a_masked_model_is_refused():
    model = small_net()
    magnitude_prune(model, quality=0.5)
    with pytest.raises(ValueError, match="make_pruning_permanent"):
        share_weights(model, bits=2, init="linear")


def test_magnitude_pruning_masks_small_weights_and_retraining_keeps_them_zero():
    model = small_net()
    weight = model[3].weight.detach().clone()
    fractions = magnitude_prune(model, quality=1.0)
    expected = (weight.abs() < weight.std()).double().mean().item()
    assert fractions["3"] == pytest.approx(expected)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    optimizer.step()
    assert (model[3].weight[weight.abs() < weight.std()] == 0).all()


def test_centroids_step_by_their_clusters_summed_gradients():
    layer = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[1.0, 1.1], [-1.0, -0.9]]))
    shared = share_weights(layer, bits=1, init="linear")
    layer[0].weight.grad = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    centroids = shared["0"].centroids.clone()
    shared_gradient_step(layer, shared, lr=0.1)
    assert torch.allclose(shared["0"].centroids, centroids - 0.1 * torch.tensor([7.0, 3.0]))
    assert torch.allclose(layer[0].weight, shared["0"].weights())


def test_the_compression_rate_matches_an_actual_packed_encoding():
    for bits in (1, 3, 5, 8):
        shared = share_weights(small_net(), bits=bits, init="density")["3"]
        n, k = shared.assignment.numel(), len(shared.centroids)
        packed = packed_bytes(shared, bits)
        assert packed == math.ceil(n * bits / 8) + 4 * k
        assert compression_rate(n, k) == pytest.approx(32 * n / (8 * packed), rel=0.01)
        assert torch.equal(unpack_indices(pack_indices(shared.assignment, bits), bits, n),
                           shared.assignment)


@pytest.mark.parametrize("call, message", [
    (lambda: magnitude_prune(small_net(), 0), "positive"),
    (lambda: share_weights(small_net(), 0, "linear"), "between 1 and 16"),
    (lambda: share_weights(small_net(), 2, "kmeans++"), "forgy, density, linear"),
    (lambda: initial_centroids(torch.ones(3), 4, "linear"), "between 1 and the number"),
])
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()
