"""One round of paper 05's reduction without its fine-tuning (Taylor scores, the plan, the
surgery) on the course's ResNet-18 and DenseNet-121: seconds and torch.fx traces per round.

    python benchmarks/reduce_round.py [--models resnet18 densenet121] [--images 256] [--repeats 5]

A round is what `reduction.reduce_iteratively` does between two fine-tunings, on the graph it
passes along: the first round of a run builds the graph (one trace), each later one reuses the
graph the previous cut returned. Both are timed; the count of traces is read by wrapping
torch.fx's tracer. Random images (the timing does not depend on what they show).
"""

import argparse
import statistics
import time
from contextlib import contextmanager
from unittest.mock import patch

import torch
import torch.fx

from course_utils.data import DATASETS, ImageData
from course_utils.graph import ModelGraph
from course_utils.models import build_model
from course_utils.plans import globally_lowest, reducible_scores
from course_utils.reduction import reducible_filters
from course_utils.scores import taylor
from course_utils.surgery import remove


@contextmanager
def counted_traces():
    calls, original = [], torch.fx.Tracer.trace

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)
    with patch.object(torch.fx.Tracer, "trace", counting):
        yield calls


def one_round(graph: ModelGraph, data: ImageData, per_cut: int) -> ModelGraph:
    scores = reducible_scores(graph, taylor(graph, data))
    return remove(graph, globally_lowest(scores, per_cut))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "densenet121"])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    data = ImageData(DATASETS["cifar10"], "train",
                     torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
                     torch.randint(0, 10, (args.images,), generator=generator), "random images")
    example = torch.zeros(1, 3, 32, 32)
    print(f"{args.images} calibration images, {torch.get_num_threads()} threads, width {args.width}, "
          f"median of {args.repeats}")
    for name in args.models:
        first, later, traces = [], [], []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            model = build_model(name, args.width).eval()
            with counted_traces() as calls:
                start = time.perf_counter()
                graph = ModelGraph(model, example)
                per_cut = round(0.05 * reducible_filters(graph))
                graph = one_round(graph, data, per_cut)
                first.append(time.perf_counter() - start)
                start = time.perf_counter()
                one_round(graph, data, per_cut)
                later.append(time.perf_counter() - start)
            traces.append(len(calls))
        print(f"{name}: first round (graph built) {statistics.median(first):.3f} s, a later round "
              f"{statistics.median(later):.3f} s; torch.fx traces for both rounds: {max(traces)}")


if __name__ == "__main__":
    main()
