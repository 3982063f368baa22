"""Shared figures: one function per kind of picture the notebooks draw."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .data import ImageData


def show_samples(data: ImageData, per_class: int = 8, title: str | None = None):
    """A grid: one row per class, `per_class` images of it."""
    classes = range(data.num_classes)
    figure, axes = plt.subplots(len(classes), per_class,
                                figsize=(per_class * 0.9, len(classes) * 0.95))
    for row, label in enumerate(classes):
        images = data.images[data.labels == label][:per_class].cpu()
        for column in range(per_class):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(images):
                image = images[column].permute(1, 2, 0).squeeze(-1)
                axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[row, 0].set_title(data.classes[label], fontsize=8, loc="left", pad=2)
    figure.suptitle(title or f"{data.label}: {per_class} {data.split} images per class")
    figure.tight_layout()
    return figure


def plot_losses(histories: dict, title: str = "training loss", smooth: int = 10):
    """Training loss per step (a running mean over `smooth` steps), one line per history."""
    figure, axis = plt.subplots(figsize=(6, 3.2))
    for name, history in histories.items():
        losses = torch.tensor(history.step_loss)
        if len(losses) >= smooth:
            losses = losses.unfold(0, smooth, 1).mean(1)
        axis.plot(losses, label=name)
    axis.set(xlabel="step", ylabel="cross-entropy", title=title)
    axis.legend()
    figure.tight_layout()
    return figure


def plot_per_class(accuracies: dict, title: str = "test accuracy per class"):
    """Bars of accuracy (%) per class, one panel per model: {name: (class names, accuracies)}."""
    figure, axes = plt.subplots(1, len(accuracies), figsize=(4.2 * len(accuracies), 3),
                                squeeze=False)
    for axis, (name, (classes, values)) in zip(axes[0], accuracies.items()):
        axis.bar(range(len(classes)), [100 * v for v in values])
        axis.set_xticks(range(len(classes)), classes, rotation=60, fontsize=8)
        axis.set(ylim=(0, 100), ylabel="accuracy %", title=name)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def show_filter(weights: torch.Tensor, feature_map: torch.Tensor, image: torch.Tensor,
                title: str):
    """A filter's weights (averaged over input channels), the input image, and the map the
    filter produced from it."""
    figure, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
    panels = [(weights.mean(0), "weights (mean over inputs)", "RdBu_r"),
              (image, "input image", "gray"), (feature_map, "its feature map", "viridis")]
    for axis, (picture, name, colours) in zip(axes, panels):
        picture = picture.detach().float().cpu()
        if picture.ndim == 3:
            picture = picture.permute(1, 2, 0).squeeze(-1)
            if picture.ndim == 3:  # colour image: back to [0, 1] for display
                picture = (picture - picture.min()) / (picture.max() - picture.min() + 1e-8)
        if colours == "RdBu_r":
            bound = picture.abs().max().item() or 1.0
            shown = axis.imshow(picture, cmap=colours, vmin=-bound, vmax=bound)
        else:
            shown = axis.imshow(picture, cmap=colours if picture.ndim == 2 else None)
        if picture.ndim == 2 and colours != "gray":
            figure.colorbar(shown, ax=axis, fraction=0.046)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


GRAPH_COLOURS = {"reducible": "#7fc97f", "residual group": "#fdc086",
                 "concatenated": "#80b1d3", "fixed": "#f28e8e", "operation": "#eeeeee"}


def draw_model_graph(graph, axis, title: str = ""):
    """A `surgery.ModelGraph`'s execution graph, top to bottom: each layer with filters of
    its own (a convolution, or a Linear on the channel axis) coloured by what paper 05 may do
    with it (reduce it; only with its residual group; leave it, as it feeds a concatenation;
    never: its channels are fixed or refused), other operations in grey."""
    nodes = [n for n in graph.module.graph.nodes if n.op != "get_attr"]
    lanes, taken = {}, set()
    for node in nodes:
        inputs = [n for n in node.all_input_nodes if n in lanes]
        if inputs and inputs[0] not in taken:
            lanes[node] = lanes[inputs[0]]
            taken.add(inputs[0])
        else:
            lanes[node] = max(lanes.values(), default=-1) + 1 if inputs else 0
    row = {node: index for index, node in enumerate(nodes)}
    for node in nodes:
        for source in node.all_input_nodes:
            if source in row:
                axis.annotate("", (lanes[node], -row[node]), (lanes[source], -row[source]),
                              arrowprops=dict(arrowstyle="->", color="grey", lw=0.8,
                                              shrinkA=7, shrinkB=7))
    for node in nodes:
        kind = _graph_kind(graph, node)
        label = getattr(node.target, "__name__", str(node.target))
        if node.op == "call_module" and kind == "operation":
            label = type(graph.modules[node.target]).__name__
        axis.text(lanes[node], -row[node], label, ha="center", va="center", fontsize=7,
                  bbox=dict(boxstyle="round,pad=0.25", fc=GRAPH_COLOURS[kind], ec="none"))
    axis.set_xlim(-0.8, max(lanes.values()) + 0.8)
    axis.set_ylim(-len(nodes) + 0.3, 0.7)
    axis.axis("off")
    axis.set_title(title, fontsize=9)


def _graph_kind(graph, node) -> str:
    if node.op != "call_module" or not any(node.target in g.convs for g in graph.groups):
        return "operation"
    group = graph.group_of(node.target)
    if not group.prunable:
        return "fixed"
    if group.concatenated:
        return "concatenated"
    return "residual group" if group.coupled else "reducible"


def graph_legend(figure):
    """The colour key of `draw_model_graph`, under the figure."""
    from matplotlib.patches import Patch

    figure.legend(handles=[Patch(color=colour, label=kind)
                           for kind, colour in GRAPH_COLOURS.items()],
                  loc="lower center", ncol=len(GRAPH_COLOURS), fontsize=8, frameon=False)


def plot_kept_filters(axis, original: dict[str, int], kept: dict[str, int], title: str = ""):
    """Bars of the filters each reducible conv keeps, over grey bars of what it had."""
    names = list(original)
    positions = range(len(names))
    axis.bar(positions, [original[n] for n in names], color="#dddddd", label="before")
    axis.bar(positions, [kept[n] for n in names], color="#386cb0", label="kept")
    axis.set_xticks(list(positions), names, rotation=90, fontsize=6)
    axis.set_ylabel("filters")
    axis.set_title(title, fontsize=9)


SHOOTOUT_MEASURES = {"test, after fine-tuning": "test_after", "validation, before fine-tuning": "val_before",
                     "validation, after fine-tuning": "val_after"}


def plot_shootout(axis, runs, model: str, budget: float, measure: str, dense: dict):
    """Notebook 06 at one model and FLOPs budget: each criterion's accuracy (`measure`, a key
    of SHOOTOUT_MEASURES), mean over the seeds with their standard deviation, best on top,
    against the dense model's (`dense`: {"accuracy": test, "val": validation})."""
    column = SHOOTOUT_MEASURES[measure]
    part = runs[(runs.model == model) & (runs.budget == budget)]
    summary = part.groupby("criterion")[column].agg(["mean", "std"]).fillna(0).sort_values("mean")
    axis.barh(summary.index, 100 * summary["mean"], xerr=100 * summary["std"], color="tab:blue", capsize=3)
    reference = dense["val" if column.startswith("val") else "accuracy"]
    axis.axvline(100 * reference, color="black", ls="--", lw=1, label=f"dense {100 * reference:.2f}%")
    low = 100 * min(summary["mean"].min(), reference)
    axis.set(xlim=(max(0, low - 10), 100 * max(summary["mean"].max(), reference) + 2),
             xlabel=f"{measure} accuracy (%)", title=f"{model}: {budget:.0%} of the FLOPs removed")
    axis.legend(loc="lower right", fontsize=8)
