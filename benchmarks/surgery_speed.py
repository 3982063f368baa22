"""Seconds to remove 30% of every prunable group's channels, ours against Torch-Pruning's.

    python benchmarks/surgery_speed.py [--models resnet50 convnext_tiny resnext50_32x4d] [--fraction 0.3]

Both start from the same model and remove the same channels (our plan, given to
Torch-Pruning's dependency graph group by group); both times include building the graph.
The parameters left and the outputs must agree, or the comparison is void.

Grouped convolutions (ResNeXt, RegNet): our surgery removes a channel from a grouped conv's
inputs and outputs alike; Torch-Pruning 1.6 keeps the outputs and slices the inputs by their
position within a group (right only when every group loses the same positions). So the plan
here removes the same positions from every group, and Torch-Pruning is also told to remove
those channels at the grouped convs' outputs.
"""

import argparse
import copy
import statistics
import time

import torch
import torch_pruning
import torchvision.models as tvm
from torch import nn

from course_utils.metrics import count_parameters
from course_utils.graph import ModelGraph
from course_utils.surgery import remove_filters



def ours(model, x, plan):
    remove_filters(model, x, {name: channels for name, (channels, _) in plan.items()})  # traces and analyses the model itself, then removes
    return model


def torch_pruning_same_plan(model, x, plan):
    scales = [(p, 0) for n, p in model.named_parameters() if n.endswith("layer_scale")]  # ConvNeXt
    graph = torch_pruning.DependencyGraph().build_dependency(model, example_inputs=x,
                                                             unwrapped_parameters=scales)
    modules = dict(model.named_modules())
    for name, (channels, grouped) in plan.items():
        for layer in [name, *grouped]:
            prune = (torch_pruning.prune_linear_out_channels if isinstance(modules[layer], nn.Linear)
                     else torch_pruning.prune_conv_out_channels)
            graph.get_pruning_group(modules[layer], prune, channels).prune()
    return model


def aligned_plan(model, graph, fraction, generator):
    """{first conv: (channels, grouped convs they pass)}: at random, the same positions in every
    group of a grouped conv (which Torch-Pruning needs)."""
    plan = {}
    for group in graph.groups:
        size = group.channels // group.blocks if group.prunable else 0
        if int(fraction * size):
            inside = torch.randperm(size, generator=generator)[:int(fraction * size)]
            channels = sorted((inside[None] + size * torch.arange(group.blocks)[:, None]).flatten().tolist())
            grouped = [conv for conv in group.convs[1:]
                       if 1 < model.get_submodule(conv).groups < model.get_submodule(conv).out_channels]
            plan[group.convs[0]] = (channels, grouped)
    return plan


def timed(prune, original, x, plan, repeats):
    times = []
    for _ in range(repeats):
        model = copy.deepcopy(original)
        start = time.perf_counter()
        prune(model, x, plan)
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        return statistics.median(times), count_parameters(model), model(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "convnext_tiny", "resnext50_32x4d",
                                                         "regnet_x_400mf"])
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in args.models:
        original = getattr(tvm, name)(weights=None).eval()
        x = torch.randn(1, 3, args.size, args.size)
        graph = ModelGraph(original, x)
        plan = aligned_plan(original, graph, args.fraction, torch.Generator().manual_seed(0))
        ours_seconds, ours_left, ours_out = timed(ours, original, x, plan, args.repeats)
        tp_seconds, tp_left, tp_out = timed(torch_pruning_same_plan, original, x, plan, args.repeats)
        assert ours_left == tp_left, f"{name}: {ours_left:,} parameters left against {tp_left:,}"
        difference = ((ours_out - tp_out).abs().max() / tp_out.abs().max()).item()
        assert difference < 1e-4, f"{name}: outputs differ by {difference:.1e} (relative)"
        print(f"{name} at {args.size}x{args.size}: {sum(g.prunable for g in graph.groups)} of "
              f"{len(graph.groups)} groups prunable, {args.fraction:.0%} of each removed, "
              f"parameters {count_parameters(original):,} -> {ours_left:,} (both)")
        print(f"  ours (graph + surgery):        {ours_seconds:.3f} s (median of {args.repeats})")
        print(f"  Torch-Pruning (graph + prune): {tp_seconds:.3f} s "
              f"-> ours takes {ours_seconds / tp_seconds:.2f}x its time")


if __name__ == "__main__":
    main()
