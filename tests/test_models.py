import pytest
import torch
from torch import nn

from course_utils.models import COURSE_MODELS, TORCHVISION_MODELS, build_model


def example(name):
    return torch.randn(2, 1, 28, 28) if name == "alexnet" else torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("name", [*COURSE_MODELS])
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_course_models_give_one_logit_per_class(name, width):
    x = example(name)
    model = build_model(name, width, num_classes=7, in_channels=x.shape[1])
    assert model(x).shape == (2, 7)


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_adapted_torchvision_models_take_small_images(name):
    assert build_model(name)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_width_scales_every_convolution():
    def conv_widths(width):
        return [m.out_channels for m in build_model("vgg16", width).modules()
                if isinstance(m, nn.Conv2d)]
    full, half = conv_widths(1.0), conv_widths(0.5)
    assert full[0] == 64 and full[-1] == 512 and half == [c // 2 for c in full]


def test_alexnet_last_conv_has_the_papers_64_groups_of_4():
    convs = [m for m in build_model("alexnet", in_channels=1).modules()
             if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and convs[-1].out_channels == 256


@pytest.mark.parametrize("call, message", [
    (lambda: build_model("vgg16", 0), "positive"),
    (lambda: build_model("vgg16", -1.0), "positive"),
    (lambda: build_model("lenet"), "alexnet, vgg16"),
    (lambda: build_model("resnet50", 0.5), "surgery"),
])
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()
