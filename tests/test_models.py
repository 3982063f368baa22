import pytest
import torch
from torch import nn

from course_utils.models import imagenet_weights, COURSE_MODELS, TORCHVISION_MODELS, build_model


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
    (lambda: build_model("vgg16", 0), r"a number in \(0, 4\]"),
    (lambda: build_model("vgg16", -1.0), r"a number in \(0, 4\]"),
    (lambda: build_model("vgg16", float("inf")), r"a number in \(0, 4\]"),
    (lambda: build_model("vgg16", 1e6), r"a number in \(0, 4\]"),
    (lambda: build_model("vgg16", num_classes=2.5), "num_classes must be a whole number"),
    (lambda: build_model("lenet"), "alexnet, vgg16"),
    (lambda: build_model("resnet50", 1.5), r"\(0, 1\]"),
    (lambda: build_model("vgg16", pretrained=True), "ImageNet weights exist for"),
    (lambda: build_model("resnet50", 0.5, pretrained=True), "at width 1.0 only"),
])
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_models_are_thinned_by_surgery(name):
    def widths(model):
        return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    full, quarter = widths(build_model(name)), widths(build_model(name, 0.25))
    assert len(full) == len(quarter)
    # every conv but the classifier's (SqueezeNet's, one filter per class) keeps a quarter
    assert [q for f, q in zip(full, quarter) if f != 10] == [
        max(1, round(f / 4)) for f in full if f != 10]
    assert build_model(name, 0.25)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_alexnet_takes_cifar_sized_images_when_told():
    model = build_model("alexnet", 0.25, image_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(RuntimeError):
        build_model("alexnet", 0.25)(torch.randn(2, 3, 32, 32))  # built for 28 x 28


def test_imagenet_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet_weights("resnet50") is None and imagenet_weights("vgg16") is None
    with pytest.raises(FileNotFoundError, match="hub"):
        build_model("resnet50", pretrained=True)
