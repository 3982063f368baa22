import pytest
import torch
from torch import nn

from course_utils.criteria import (check_ratio, l1_norm, l2_norm, lowest, mean_activation,
                                   random_scores, taylor)
from course_utils.data import DATASETS, ImageData
from course_utils.surgery import remove_filters

CRITERIA = [l1_norm, l2_norm, mean_activation, taylor]


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
