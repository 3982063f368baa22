import pytest
import torch
from torch import nn

from course_utils import reduction
from course_utils.graph import ModelGraph
from course_utils.scores import mean_activation
from course_utils.data import DATASETS, ImageData


def slices(count=4, n=16):
    generator = torch.Generator().manual_seed(0)
    return [ImageData(DATASETS["cifar10"], "train",
                      torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8),
                      torch.arange(n) % 10, "synthetic") for _ in range(count)]


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_round_k_fine_tunes_on_slice_k_with_seed_k_whether_or_not_a_curve_is_drawn(monkeypatch):
    parts = slices()
    position = lambda data: [part is data for part in parts].index(True)
    for curve_data in (None, parts[0]):
        seen = []
        monkeypatch.setattr(reduction, "finetune",
                            lambda model, data, **kw: seen.append((position(data), kw["seed"])))
        run = reduction.reduce_iteratively(
            small_net(), cuts=3, share=0.1, rounds_per_cut=2, rounds=parts, calibration=parts[0],
            example_input=torch.zeros(2, 3, 8, 8), lr=0.01, batch_size=8, seed=10,
            curve_data=curve_data)
        assert seen == [(k % 4, 10 + k) for k in range(6)]
        assert run.cut_before_round == [0, 2, 4]
        assert len(run.accuracy) == (6 if curve_data is not None else 0)


def test_each_cut_removes_its_share_of_the_filters_reducible_at_the_start():
    model, parts = small_net(), slices()
    example = torch.zeros(2, 3, 8, 8)
    assert reduction.reducible_filters(ModelGraph(model, example)) == 16
    reduction.reduce_iteratively(model, cuts=2, share=0.25, rounds_per_cut=1, rounds=parts,
                                 calibration=parts[0], example_input=example, lr=0.01,
                                 batch_size=8, criterion=mean_activation)
    assert model[0].out_channels + model[3].out_channels == 16 - 2 * 4


def test_layers_restricts_the_cut_to_those_convolutions_and_the_share_to_their_filters():
    model, parts = small_net(), slices()
    example = torch.zeros(2, 3, 8, 8)
    reduction.reduce_iteratively(model, cuts=2, share=0.25, rounds_per_cut=1, rounds=parts,
                                 calibration=parts[0], example_input=example, lr=0.01,
                                 batch_size=8, criterion=mean_activation, layers=["0"])
    assert (model[0].out_channels, model[3].out_channels) == (8 - 2 * 2, 8)  # 25% of 8, twice
    for wrong in (["1"], []):  # a batch norm is not a reducible convolution; nothing at all
        with pytest.raises(ValueError, match="layers must be reducible convolutions"):
            reduction.reduce_iteratively(small_net(), cuts=1, share=0.25, rounds_per_cut=1, rounds=parts,
                                         calibration=parts[0], example_input=example, lr=0.01,
                                         batch_size=8, layers=wrong)
