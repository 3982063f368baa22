"""Head and MLP-unit scores (course_utils.head_scores) against an independent count: the
importance of a gate is the mean absolute derivative of each image's loss with respect to it,
here taken by central differences on a copy whose head (unit) output is scaled by 1 +- eps
through the weights that read it; a planted dead head or unit ranks last; a score that
forgets the absolute value is caught."""

import copy

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer

from course_utils.data import DATASETS, ImageData
from course_utils.graph import ModelGraph
from course_utils.head_scores import (gate_importance, head_importance, head_magnitude, random_head_scores,
                                      random_unit_scores, unit_importance, unit_magnitude)

ATTENTION = "encoder.layers.encoder_layer_1.self_attention"
FC1, FC2 = "encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_0.mlp.3"


def small_vit():
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=12,
                              num_classes=10).double().eval()
    torch.nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero: no gradient would reach a gate
    return model


def images(n=6):
    generator = torch.Generator().manual_seed(1)
    return ImageData(DATASETS["cifar10"], "val", torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                                               generator=generator), torch.arange(n) % 10, "synthetic")


def per_image_derivative(model, data, weight_of, columns, eps=1e-5):
    """d loss(image) / d xi for each image, xi scaling the given input columns of a reader's weight."""
    x, labels = next(iter(data.batches(len(data), device="cpu")))
    x = x.double()
    losses = []
    for sign in (1, -1):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            weight_of(scaled)[:, columns] *= 1 + sign * eps
            losses.append(torch.nn.functional.cross_entropy(scaled(x), labels, reduction="none"))
    return (losses[0] - losses[1]) / (2 * eps)


def brute_force(model, data, weight_of, units, width):
    means = torch.stack([per_image_derivative(model, data, weight_of, list(range(u * width, (u + 1) * width))).abs().mean()
                         for u in range(units)])
    return means / means.norm()


def test_head_importance_is_the_mean_absolute_gate_gradient_normalised_per_layer():
    model, data = small_vit(), images()
    found = head_importance(model, data, batch_size=4)
    expected = brute_force(model, data, lambda m: m.get_submodule(ATTENTION).out_proj.weight, 4, 4)
    torch.testing.assert_close(found[ATTENTION].double(), expected, atol=1e-4, rtol=1e-3)
    assert set(found) == {ATTENTION, "encoder.layers.encoder_layer_0.self_attention"}
    assert type(model.get_submodule(ATTENTION)).__name__ == "MultiheadAttention"  # the model is left as it was


def test_unit_importance_is_the_mean_absolute_gate_gradient_normalised_per_layer():
    model, data = small_vit(), images()
    found = unit_importance(ModelGraph(model, torch.zeros(1, 3, 32, 32, dtype=torch.double)), data, batch_size=4)
    expected = brute_force(model, data, lambda m: m.get_submodule(FC2).weight, 12, 1)
    torch.testing.assert_close(found[FC1].double(), expected, atol=1e-4, rtol=1e-3)
    assert not model.get_submodule(FC2)._forward_pre_hooks  # the gates are gone


def test_a_score_without_the_absolute_value_is_caught():
    model, data = small_vit(), images()
    signed = head_importance(model, data, score=lambda g: g.mean(0) / g.mean(0).norm())
    expected = brute_force(model, data, lambda m: m.get_submodule(ATTENTION).out_proj.weight, 4, 4)
    assert not torch.allclose(signed[ATTENTION].double(), expected, atol=1e-3)


def test_a_planted_dead_head_and_unit_rank_last():
    model, data = small_vit(), images()
    with torch.no_grad():
        attention = model.get_submodule(ATTENTION)
        attention.out_proj.weight[:, 8:12] = 0  # head 2 writes nothing
        attention.in_proj_weight[[r for part in range(3) for r in range(part * 16 + 8, part * 16 + 12)]] = 0
        model.get_submodule(FC2).weight[:, 5] = 0  # unit 5 is read by nothing
        model.get_submodule(FC1).weight[5] = 0
    graph = ModelGraph(model, torch.zeros(1, 3, 32, 32, dtype=torch.double))
    for scores in (head_importance(model, data), head_magnitude(model)):
        assert scores[ATTENTION].argmin() == 2 and scores[ATTENTION][2] == 0
    for scores in (unit_importance(graph, data), unit_magnitude(graph)):
        assert scores[FC1].argmin() == 5


def test_random_scores_cover_every_head_and_unit():
    graph = ModelGraph(small_vit(), torch.zeros(1, 3, 32, 32, dtype=torch.double))
    assert {k: len(v) for k, v in random_head_scores(graph).items()} == {
        "encoder.layers.encoder_layer_0.self_attention": 4, ATTENTION: 4}
    assert {k: len(v) for k, v in random_unit_scores(graph).items()} == {FC1: 12, "encoder.layers.encoder_layer_1.mlp.0": 12}


def test_gate_importance_normalises_per_layer():
    scores = gate_importance(torch.tensor([[3.0, -4.0], [-3.0, 4.0]]))
    torch.testing.assert_close(scores, torch.tensor([0.6, 0.8]))


def test_no_calibration_images_is_refused():
    empty = ImageData(DATASETS["cifar10"], "val", torch.zeros(0, 3, 32, 32, dtype=torch.uint8),
                      torch.zeros(0, dtype=torch.long), "synthetic")
    with pytest.raises(ValueError):
        head_importance(small_vit(), empty)
