"""The papers' networks, sized for small images, each with a width multiplier.

Every forward pass flattens with `flatten(1)`, never with a hard-coded size, so that
surgery can shrink the last convolution and fix the first linear layer after it
(paper 05, Figure 2). `build_model(name, ...)` is the one entry point notebooks use.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


def scaled(channels: int, width: float) -> int:
    """`channels` times `width`, rounded, and at least 1."""
    return max(1, round(channels * width))


def he_init_convs(model: nn.Module) -> None:
    """He (Kaiming) initialisation of the convolutions: without batch norm, PyTorch's default
    init leaves five stacked ReLU convolutions' signal so small that short training never
    leaves chance level. (Linear layers keep the default: He init there makes it diverge.)"""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


MAX_WIDTH = 4.0  # four times the papers' widths: past it a course model no longer fits a laptop


def _check_width(width: float) -> None:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= MAX_WIDTH:
        raise ValueError(f"width multiplier must be a number in (0, {MAX_WIDTH:g}] (1.0 is the paper's "
                         f"width), got {width!r}")


class AlexNet28(nn.Module):
    """Paper 01's AlexNet for 28 x 28 digits: five convolutions and three linear layers.

    Kept from AlexNet: ReLU, overlapping 3 x 3 max pooling with stride 2, dropout in the
    classifier, the 64-192-384-256-256 filter progression (times `width`). Changed for
    28 x 28 inputs: 5 x 5 and 3 x 3 kernels at stride 1 instead of 11 x 11 at stride 4,
    and no local response normalisation. The last convolution ("features.10") has 256
    filters at width 1: the paper's 64 groups of 4.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 1,
                 hidden: int = 2048, image_size: int = 28):
        super().__init__()
        _check_width(width)
        side = image_size
        for _ in range(3):  # the three 3 x 3 max poolings at stride 2
            side = (side - 3) // 2 + 1
        c1, c2, c3, c4, c5 = (scaled(c, width) for c in (64, 192, 384, 256, 256))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                                    # 28 -> 13
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                                    # 13 -> 6
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                                    # 6 -> 2
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(c5 * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        he_init_convs(self)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class VGG16(nn.Module):
    """VGG-16 with batch norm for 32 x 32 images.

    head="fc": the fifth pooling leaves 1 x 1, then Linear-ReLU-Linear (the usual CIFAR
    VGG). head="gap": the fifth pooling is replaced by global average pooling and a
    single Linear layer (paper 03's setup).
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3,
                 head: str = "fc"):
        super().__init__()
        _check_width(width)
        if head not in ("fc", "gap"):
            raise ValueError(f"unknown VGG head {head!r}; choose 'fc' or 'gap'")
        layers, channels = [], in_channels
        layout = VGG16_LAYOUT if head == "fc" else VGG16_LAYOUT[:-1]
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = scaled(item, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        if head == "gap":
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = (nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                         nn.Linear(channels, num_classes))
                           if head == "fc" else nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions and a shortcut: the residual add that couples channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32 x 32 images: a 3 x 3 stem at stride 1, no max pooling."""

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        _check_width(width)
        stages = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stages[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stages[0]), nn.ReLU(inplace=True))
        blocks, channels = [], stages[0]
        for index, out in enumerate(stages):
            stride = 1 if index == 0 else 2
            blocks += [BasicBlock(channels, out, stride), BasicBlock(out, out, 1)]
            channels = out
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


VIT_LAYERS, VIT_HEADS, VIT_HEAD_WIDTH, VIT_PATCH = 6, 8, 32, 4


def small_vit(width: float = 1.0, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Notebook 08's vision transformer for small images: torchvision's VisionTransformer with
    4 x 4 patches (64 tokens and a class token on 32 x 32 images), 6 layers of 8 heads, each
    head 32 channels wide at width 1 (the embedding 256, the MLP twice that), so that `width`
    narrows every head and keeps their number (the heads are what the notebook prunes)."""
    from torchvision.models.vision_transformer import VisionTransformer

    if image_size % VIT_PATCH:
        raise ValueError(f"the small ViT cuts images into {VIT_PATCH} x {VIT_PATCH} patches: image_size "
                         f"must be a multiple of {VIT_PATCH}, got {image_size}")
    hidden = VIT_HEADS * scaled(VIT_HEAD_WIDTH, width)
    model = VisionTransformer(image_size=image_size, patch_size=VIT_PATCH, num_layers=VIT_LAYERS,
                              num_heads=VIT_HEADS, hidden_dim=hidden, mlp_dim=2 * hidden, num_classes=num_classes)
    if in_channels != 3:  # torchvision's patch embedding reads three channels
        model.conv_proj = nn.Conv2d(in_channels, hidden, VIT_PATCH, VIT_PATCH)
    return model


TORCHVISION_WEIGHTS = {"resnet50": "ResNet50_Weights", "densenet121": "DenseNet121_Weights",
                       "squeezenet1_1": "SqueezeNet1_1_Weights"}


def imagenet_weights(name: str):
    """torchvision's ImageNet weights for `name` when their file is already in torch's hub
    cache, else None: the course never downloads them (these machines are offline)."""
    import torchvision.models as tvm

    if name not in TORCHVISION_WEIGHTS:
        return None
    weights = getattr(tvm, TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return weights if cached.exists() else None


def adapt_torchvision(name: str, num_classes: int = 10, in_channels: int = 3,
                      pretrained: bool = False) -> nn.Module:
    """torchvision's resnet50, densenet121 or squeezenet1_1, for 10 classes and 32 x 32.

    The stem is replaced by a 3 x 3 convolution at stride 1 and the first max pooling
    removed (small images would otherwise shrink to nothing), and the classifier sized
    to `num_classes`. With `pretrained`, every other layer starts from torchvision's
    ImageNet weights (which must be in the hub cache, see `imagenet_weights`).
    """
    import torchvision.models as tvm

    if name not in TORCHVISION_WEIGHTS:
        raise ValueError(f"unknown torchvision model {name!r}; choose resnet50, densenet121 "
                         f"or squeezenet1_1")
    weights = imagenet_weights(name) if pretrained else None
    if pretrained and weights is None:
        raise FileNotFoundError(f"torchvision's ImageNet weights for {name} are not in "
                                f"{torch.hub.get_dir()}/checkpoints; copy them there or train "
                                f"from scratch (pretrained=False)")
    model = getattr(tvm, name)(weights=weights)
    if name == "resnet50":
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "densenet121":
        model.features.conv0 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.features.pool0 = nn.Identity()
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    else:
        model.features[0] = nn.Conv2d(in_channels, 64, 3, 1, 1)
        model.classifier[1] = nn.Conv2d(512, num_classes, 1)
        nn.init.normal_(model.classifier[1].weight, 0.0, 0.01)  # as torchvision initialises it
        model.num_classes = num_classes
    return model


@torch.no_grad()
def layer_outputs(model: nn.Module, images: torch.Tensor, names: list[str]) -> dict:
    """The outputs of the named submodules for `images` (one forward pass, eval mode)."""
    captured, hooks = {}, []
    for name in names:
        def keep(module, inputs, output, name=name):
            captured[name] = output.detach()
        hooks.append(model.get_submodule(name).register_forward_hook(keep))
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return captured


COURSE_MODELS = {
    "alexnet": AlexNet28,
    "vgg16": lambda **kw: VGG16(head="fc", **kw),
    "vgg16_gap": lambda **kw: VGG16(head="gap", **kw),
    "resnet18": ResNet18,
    "vit": small_vit,
}
TORCHVISION_MODELS = ("resnet50", "densenet121", "squeezenet1_1")


def build_model(name: str, width: float = 1.0, num_classes: int = 10,
                in_channels: int = 3, image_size: int | None = None,
                pretrained: bool = False) -> nn.Module:
    """A course model by name: alexnet (for `image_size` x `image_size` inputs, by default
    paper 01's 28), vgg16, vgg16_gap, resnet18, vit (notebook 08's, `small_vit`), or the adapted torchvision resnet50,
    densenet121, squeezenet1_1 (made `width` times as wide by surgery, see `surgery.thin`;
    `pretrained`: from ImageNet weights, at width 1 only)."""
    _check_width(width)
    for argument, value, low, high in (("num_classes", num_classes, 1, 100_000), ("in_channels", in_channels, 1, 64),
                                       ("image_size", image_size, 8, 1_024)):
        if value is None and argument == "image_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{argument} must be a whole number from {low} to {high:,}, got {value!r}")
    if pretrained and (name not in TORCHVISION_MODELS or width != 1.0):
        raise ValueError(f"ImageNet weights exist for {', '.join(TORCHVISION_MODELS)} at width "
                         f"1.0 only, not for {name} at width {width}")
    if name == "alexnet":
        return AlexNet28(width=width, num_classes=num_classes, in_channels=in_channels,
                         image_size=image_size or 28)
    if name == "vit":
        return small_vit(width, num_classes, in_channels, image_size or 32)
    if name in COURSE_MODELS:
        return COURSE_MODELS[name](width=width, num_classes=num_classes,
                                   in_channels=in_channels)
    if name in TORCHVISION_MODELS:
        _check_width(width)
        model = adapt_torchvision(name, num_classes, in_channels, pretrained)
        if width != 1.0:
            from .surgery import thin  # surgery traces models; models need it only here

            side = image_size or 32  # any size will do: only channel counts change
            thin(model, width, torch.zeros(2, in_channels, side, side))
            he_init_convs(model)
        return model
    raise ValueError(f"unknown model {name!r}; choose one of "
                     f"{', '.join([*COURSE_MODELS, *TORCHVISION_MODELS])}")
