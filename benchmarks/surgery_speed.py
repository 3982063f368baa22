"""Seconds to remove 30% of every prunable group's channels, ours against Torch-Pruning's.

    python benchmarks/surgery_speed.py [--models resnet50 convnext_tiny] [--fraction 0.3]

Both start from the same model and remove the same channels (our plan, given to
Torch-Pruning's dependency graph group by group); both times include building the graph.
The parameters left must agree, or the comparison is void.
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
from course_utils.surgery import ModelGraph, remove_filters


def ours(model, x, plan):
    remove_filters(model, x, plan)  # traces and analyses the model itself, then removes
    return model


def torch_pruning_same_plan(model, x, plan):
    scales = [(p, 0) for n, p in model.named_parameters() if n.endswith("layer_scale")]  # ConvNeXt
    graph = torch_pruning.DependencyGraph().build_dependency(model, example_inputs=x,
                                                             unwrapped_parameters=scales)
    modules = dict(model.named_modules())
    for name, channels in plan.items():
        prune = (torch_pruning.prune_linear_out_channels if isinstance(modules[name], nn.Linear)
                 else torch_pruning.prune_conv_out_channels)
        graph.get_pruning_group(modules[name], prune, channels).prune()
    return model


def timed(prune, original, x, plan, repeats):
    times = []
    for _ in range(repeats):
        model = copy.deepcopy(original)
        start = time.perf_counter()
        prune(model, x, plan)
        times.append(time.perf_counter() - start)
    return statistics.median(times), count_parameters(model)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "convnext_tiny"])
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in args.models:
        original = getattr(tvm, name)(weights=None).eval()
        x = torch.randn(1, 3, args.size, args.size)
        graph = ModelGraph(original, x)
        generator = torch.Generator().manual_seed(0)
        plan = {g.convs[0]: torch.randperm(g.channels, generator=generator)[
            :int(args.fraction * g.channels)].tolist() for g in graph.groups if g.prunable}
        ours_seconds, ours_left = timed(ours, original, x, plan, args.repeats)
        tp_seconds, tp_left = timed(torch_pruning_same_plan, original, x, plan, args.repeats)
        assert ours_left == tp_left, f"{name}: {ours_left:,} parameters left against {tp_left:,}"
        print(f"{name} at {args.size}x{args.size}: {sum(g.prunable for g in graph.groups)} of "
              f"{len(graph.groups)} groups prunable, {args.fraction:.0%} of each removed, "
              f"parameters {count_parameters(original):,} -> {ours_left:,} (both)")
        print(f"  ours (graph + surgery):        {ours_seconds:.3f} s (median of {args.repeats})")
        print(f"  Torch-Pruning (graph + prune): {tp_seconds:.3f} s "
              f"-> ours takes {ours_seconds / tp_seconds:.2f}x its time")


if __name__ == "__main__":
    main()
