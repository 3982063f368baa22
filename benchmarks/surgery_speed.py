"""Seconds to build the graph of torchvision's ResNet-50 and remove 30% of its channels.

    python benchmarks/surgery_speed.py [--model resnet50] [--fraction 0.3] [--repeats 3]
"""

import argparse
import copy
import statistics
import time

import torch
import torchvision.models as tvm

from course_utils.surgery import ModelGraph, remove_filters


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    original = getattr(tvm, args.model)(weights=None).eval()
    x = torch.randn(1, 3, args.size, args.size)
    graph = ModelGraph(original, x)
    generator = torch.Generator().manual_seed(0)
    plan = {g.convs[0]: torch.randperm(g.channels, generator=generator)[
        :int(args.fraction * g.channels)].tolist() for g in graph.groups if g.prunable}
    graph_times, removal_times = [], []
    for _ in range(args.repeats):
        model = copy.deepcopy(original)
        start = time.perf_counter()
        ModelGraph(model, x)
        graph_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        remove_filters(model, x, plan)  # traces and analyses the model itself, then removes
        removal_times.append(time.perf_counter() - start)
    groups = sum(g.prunable for g in graph.groups)
    before = sum(p.numel() for p in original.parameters())
    after = sum(p.numel() for p in model.parameters())
    print(f"{args.model} at {args.size}x{args.size} ({len(graph.groups)} channel groups, "
          f"{groups} prunable), {args.fraction:.0%} of each removed: parameters "
          f"{before:,} -> {after:,}")
    print(f"  ModelGraph alone:                 {statistics.median(graph_times):.2f} s "
          f"(median of {args.repeats})")
    print(f"  remove_filters (graph + surgery): {statistics.median(removal_times):.2f} s")

if __name__ == "__main__":
    main()
