"""Interactive pieces. Each returns a widget; the notebooks draw a static figure after it
so that headless runs (papermill, nbval) still show the picture."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
from torch import nn

from .data import ImageData
from .models import layer_outputs
from .plots import show_filter


def filter_explorer(model: nn.Module, data: ImageData, images: int = 16):
    """Pick a conv layer, one of its filters and an image: see the filter's weights and the
    feature map it produces from that image."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    device = next(model.parameters()).device
    batch, _ = data.to(device).subset(slice(0, images)).tensors()
    maps = layer_outputs(model, batch, convs)  # computed once; the sliders only index into it
    layer = widgets.Dropdown(options=convs, description="layer")
    unit = widgets.IntSlider(0, 0, model.get_submodule(convs[0]).out_channels - 1,
                             description="filter")
    image = widgets.IntSlider(0, 0, len(batch) - 1, description="image")

    def fit_slider(change):
        unit.max = model.get_submodule(change["new"]).out_channels - 1

    layer.observe(fit_slider, names="value")

    def draw(layer, unit, image):
        conv = model.get_submodule(layer)
        show_filter(conv.weight[unit], maps[layer][image, unit], batch[image],
                    f"{layer}, filter {unit} of {conv.out_channels}")
        plt.show()

    return widgets.interactive(draw, layer=layer, unit=unit, image=image)
