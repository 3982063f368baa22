"""Interactive pieces. Each returns a widget; the notebooks draw a static figure after it
so that headless runs (papermill, nbval) still show the picture."""

from __future__ import annotations


import ipywidgets as widgets
import matplotlib.pyplot as plt
from torch import nn

from .device import model_device
from .data import ImageData
from .graph import ModelGraph
from .metrics import count_flops, count_parameters
from .models import layer_outputs
from .plans import globally_lowest
from .plots import SHOOTOUT_MEASURES, plot_kept_filters, plot_shootout, show_filter
from .surgery import remove


def filter_explorer(model: nn.Module, data: ImageData, images: int = 16):
    """Pick a conv layer, one of its filters and an image: see the filter's weights and the
    feature map it produces from that image."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    device = model_device(model)
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


def reduction_explorer(models: dict[str, tuple[ModelGraph, dict]], largest: int = 75):
    """Pick a model and a reduction percentage: see the filters each reducible conv keeps
    when that share of its reducible filters goes in one cut, and the FLOPs and parameters
    left. `models` maps a name to (its graph, built with an example input, and
    `plans.reducible_scores` of it); each move prunes a copy of the graph (no trace)."""
    dense = {name: (count_flops(graph.model, graph.example_input[:1]), count_parameters(graph.model))
             for name, (graph, _) in models.items()}

    def draw(model_name, percent):
        graph, scores = models[model_name]
        example = graph.example_input
        original = {conv: len(s) for conv, s in scores.items()}
        count = round(percent / 100 * sum(original.values()))
        plan = globally_lowest(scores, count) if count else {}
        pruned = remove(graph.copy(), plan).model
        flops, params = dense[model_name]
        kept = {conv: n - len(plan.get(conv, [])) for conv, n in original.items()}
        figure, axis = plt.subplots(figsize=(9, 3))
        plot_kept_filters(axis, original, kept, (
            f"{model_name}, {percent}% of reducible filters removed: FLOPs "
            f"{count_flops(pruned, example[:1]) / flops:.0%}, parameters "
            f"{count_parameters(pruned) / params:.0%} of the dense model's"))
        plt.show()

    return widgets.interactive(
        draw, model_name=widgets.Dropdown(options=list(models), description="model"),
        percent=widgets.IntSlider(30, 0, largest, 5, description="reduce %",
                                  continuous_update=False))


def shootout_explorer(runs, dense: dict[str, dict]):
    """Notebook 06's results, a budget at a time: pick a model, a FLOPs budget and what to
    measure; see every criterion's accuracy. Controls appear only where the run offers a
    choice (a smoke run has one model and one budget). `dense`: {model: {"accuracy", "val"}}."""
    models, budgets = list(dict.fromkeys(runs.model)), sorted(set(runs.budget))

    def draw(model, budget, measure):
        figure, axis = plt.subplots(figsize=(8, 0.35 * runs.criterion.nunique() + 1.2))
        plot_shootout(axis, runs, model, budget, measure, dense[model])
        plt.tight_layout()
        plt.show()

    model = widgets.Dropdown(options=models, description="model") if len(models) > 1 else widgets.fixed(models[0])
    budget = widgets.SelectionSlider(options=[(f"{b:.0%}", b) for b in budgets], value=budgets[-1],
                                     description="FLOPs cut", continuous_update=False) \
        if len(budgets) > 1 else widgets.fixed(budgets[0])
    measure = widgets.Dropdown(options=list(SHOOTOUT_MEASURES), description="accuracy")
    return widgets.interactive(draw, model=model, budget=budget, measure=measure)
