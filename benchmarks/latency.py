"""What pruning and rounding to multiples of 8 do to measured latency on this machine.

    python benchmarks/latency.py [--model vgg16] [--width 1.0] [--ratios 0.3 0.5] [--threads 2]

One untrained course model at full width (latency does not depend on the weights), its
filters removed by L1 norm at each ratio, with and without `round_to=8`; for each: MFLOPs,
then latency (the median of 5 repeats and their spread, `metrics.measure_latency`) at batch 1 and 64 in PyTorch eager
and, with --onnx, under onnxruntime. On a CPU a multiple of 8 helps little; on a GPU tensor
cores care far more.
"""

import argparse
import tempfile
from pathlib import Path

import torch

from course_utils.graph import ModelGraph
from course_utils.metrics import count_flops, measure_latency
from course_utils.models import build_model
from course_utils.plans import group_scores, lowest
from course_utils.scores import l1_norm
from course_utils.surgery import remove


def variants(model, x, ratios):
    yield "dense", model
    graph = ModelGraph(model, x)
    scores = group_scores(graph, l1_norm(model))
    for ratio in ratios:
        for round_to in (1, 8):
            pruned = remove(graph.copy(), lowest(scores, ratio, round_to=round_to, graph=graph)).model
            yield f"-{ratio:.0%} filters" + (", round_to=8" if round_to > 1 else ""), pruned


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--onnx", action="store_true", help="also time each model under onnxruntime")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, x = build_model(args.model, args.width).eval(), torch.randn(1, 3, 32, 32)
    dense_flops = None
    print(f"{args.model} width {args.width}, {args.threads} threads; latency: median ms of 5 repeats (their spread)")
    for name, net in variants(model, x, args.ratios):
        flops = count_flops(net, x)
        dense_flops = dense_flops or flops
        cells = [f"{name:28s} {flops / 1e6:8.1f} MFLOPs ({dense_flops / flops:4.2f}x)"]
        for batch in (1, 64):
            t = measure_latency(net, x, batch, threads=args.threads, min_run_time=0.2)
            cells.append(f"eager b={batch}: {1e3 * t.median:7.2f} ({1e3 * t.spread:.2f})")
            if args.onnx:
                from course_utils.export import export_onnx, onnx_latency, onnx_session

                with tempfile.TemporaryDirectory() as folder:
                    session = onnx_session(export_onnx(net, x, Path(folder) / "m.onnx"), args.threads)
                    t = onnx_latency(session, x, batch, min_run_time=0.2)
                cells.append(f"onnx b={batch}: {1e3 * t.median:7.2f} ({1e3 * t.spread:.2f})")
        print("  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
