"""Deep Compression's two steps (paper 02, Method 2): magnitude pruning of connections,
then weight sharing by k-means within each layer.

Pruning uses torch.nn.utils.prune (weight = weight_orig * mask), so the ordinary `fit`
retrains the survivors and the pruned connections stay at zero. Weight sharing clusters
a layer's weights in one dimension: sorting makes each Lloyd step a bucketize and a
bincount, O(n log k) time and O(n) memory however many clusters there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

INITIALISATIONS = ("forgy", "density", "linear")


def compressible_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers whose weights Deep Compression prunes and shares: convolutions and linears."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def magnitude_prune(model: nn.Module, quality: float) -> dict[str, float]:
    """Mask, in every layer, the weights whose magnitude is below quality x the layer's
    weight standard deviation (Han et al.'s threshold). Returns each layer's pruned fraction."""
    if not quality > 0:
        raise ValueError(f"quality scales each layer's weight std and must be positive, got {quality}")
    pruned = {}
    for name, layer in compressible_layers(model).items():
        weight = layer.weight.detach()
        mask = (weight.abs() >= quality * weight.std()).to(weight.dtype)
        prune.custom_from_mask(layer, "weight", mask)
        pruned[name] = 1 - mask.mean().item()
    return pruned


def make_pruning_permanent(model: nn.Module) -> None:
    """Fold the masks into plain weights (zeros stay zeros)."""
    for layer in compressible_layers(model).values():
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")


def initial_centroids(values: torch.Tensor, k: int, init: str,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """k starting centroids for 1-D k-means, by the paper's three methods:
    forgy picks k of the values at random; density spaces the CDF evenly on its y-axis and
    takes the values where it crosses; linear spaces them evenly between min and max."""
    if init not in INITIALISATIONS:
        raise ValueError(f"unknown initialisation {init!r}; choose one of {', '.join(INITIALISATIONS)}")
    if not 1 <= k <= len(values):
        raise ValueError(f"k must be between 1 and the number of values ({len(values)}), got {k}")
    if init == "forgy":
        picks = torch.randperm(len(values), generator=generator)[:k].to(values.device)
        return values[picks].sort().values
    if init == "density":
        levels = (torch.arange(k, device=values.device, dtype=torch.float64) + 0.5) / k
        return values.sort().values[(levels * (len(values) - 1)).round().long()]
    return torch.linspace(values.min().item(), values.max().item(), k, device=values.device,
                          dtype=values.dtype)


def kmeans_1d(values: torch.Tensor, centroids: torch.Tensor,
              iterations: int = 30, step=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm in one dimension from `centroids`; returns (centroids, assignment).

    The nearest centroid of each value is found by bucketizing against the midpoints of
    the sorted centroids. An empty cluster keeps its previous centroid. `step(values,
    centroids)`: one Lloyd step (notebook 02's task, the learner's own) instead of ours.
    """
    centroids = centroids.sort().values.clone()
    assignment = _nearest(values, centroids)
    for _ in range(iterations):
        if step is None:
            counts = torch.bincount(assignment, minlength=len(centroids))
            sums = torch.bincount(assignment, weights=values, minlength=len(centroids))
            updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        else:
            updated = torch.as_tensor(step(values, centroids), dtype=centroids.dtype)
        updated = updated.sort().values
        assignment = _nearest(values, updated)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids, assignment


def _nearest(values: torch.Tensor, sorted_centroids: torch.Tensor) -> torch.Tensor:
    midpoints = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2
    return torch.bucketize(values, midpoints)


@dataclass
class SharedLayer:
    """One layer's weights as a codebook of k centroids and a cluster index per weight."""

    centroids: torch.Tensor  # (k,)
    assignment: torch.Tensor  # one index per weight, the weight's shape flattened
    shape: torch.Size
    kept: torch.Tensor | None  # bool mask of unpruned weights (pruned ones stay 0), or None

    def weights(self) -> torch.Tensor:
        shared = self.centroids[self.assignment]
        if self.kept is not None:
            full = torch.zeros(self.kept.numel(), dtype=shared.dtype, device=shared.device)
            full[self.kept.flatten()] = shared
            shared = full
        return shared.view(self.shape)


def share_weights(model: nn.Module, bits: int, init: str, seed: int = 0,
                  iterations: int = 30, step=None) -> dict[str, SharedLayer]:
    """Replace every layer's weights by 2**bits shared values (k-means per layer, weights
    not shared across layers; zeros left by pruning are kept out of the clustering). `step`:
    see `kmeans_1d`."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits per index must be between 1 and 16, got {bits}")
    generator = torch.Generator().manual_seed(seed)
    shared = {}
    with torch.no_grad():
        for name, layer in compressible_layers(model).items():
            if prune.is_pruned(layer):
                raise ValueError(f"{name} still carries a pruning mask; call "
                                 f"make_pruning_permanent(model) before sharing weights")
            weight = layer.weight.detach()
            kept = weight != 0 if (weight == 0).any() else None
            values = weight[kept] if kept is not None else weight.flatten()
            k = min(2 ** bits, len(values))
            centroids, assignment = kmeans_1d(
                values, initial_centroids(values, k, init, generator), iterations, step)
            shared[name] = SharedLayer(centroids, assignment, weight.shape, kept)
            layer.weight.copy_(shared[name].weights())
    return shared


def shared_gradient_step(model: nn.Module, shared: dict[str, SharedLayer], lr: float) -> None:
    """After a backward pass: sum each cluster's weight gradients, step its centroid, and
    write the shared values back (the paper's "gradients grouped by colour and summed")."""
    layers = compressible_layers(model)
    with torch.no_grad():
        for name, codebook in shared.items():
            grad = layers[name].weight.grad
            if grad is None:
                continue
            grad = grad.flatten()[codebook.kept.flatten()] if codebook.kept is not None \
                else grad.flatten()
            codebook.centroids -= lr * torch.bincount(
                codebook.assignment, weights=grad, minlength=len(codebook.centroids))
            layers[name].weight.copy_(codebook.weights())


def compression_rate(n: int, k: int, b: int = 32) -> float:
    """n*b / (n*log2(k) + k*b): n weights of b bits replaced by log2(k)-bit indices and a
    codebook of k b-bit values."""
    return n * b / (n * math.log2(k) + k * b)


def pack_indices(assignment: torch.Tensor, bits: int) -> bytes:
    """The cluster indices as a bit stream of `bits` bits each (most significant first)."""
    values = assignment.cpu().numpy().astype(np.uint32)
    if values.size and int(values.max()) >= 2 ** bits:
        raise ValueError(f"an index does not fit in {bits} bits")
    bit_matrix = (values[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1
    return np.packbits(bit_matrix.astype(np.uint8).flatten()).tobytes()


def unpack_indices(packed: bytes, bits: int, count: int) -> torch.Tensor:
    """Inverse of pack_indices."""
    bit_stream = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:count * bits]
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return torch.from_numpy(bit_stream.reshape(count, bits).astype(np.int64) @ weights)


def packed_bytes(shared: SharedLayer, bits: int) -> int:
    """Bytes of an actual encoding of the layer: packed indices plus a float32 codebook."""
    return len(pack_indices(shared.assignment, bits)) + 4 * len(shared.centroids)
