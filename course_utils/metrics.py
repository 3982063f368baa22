"""What a pruned model costs: parameters, FLOPs, bytes on disk, measured latency.

FLOPs come from `torch.utils.flop_counter`, which counts a multiply-add as 2 FLOPs
(many papers count it as 1: their "FLOPs" are our FLOPs / 2). Latency is measured,
not estimated: warm-up runs, then the median of timed repeats.
"""

from __future__ import annotations

import io
import statistics
import time

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one forward pass of one image (2 per multiply-add), in eval mode."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example_input[:1])
    model.train(was_training)
    return counter.get_total_flops()


def size_on_disk(model: nn.Module) -> int:
    """Bytes of the model's state_dict saved with torch.save."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def measure_latency(model: nn.Module, example_input: torch.Tensor, batch_size: int = 1,
                    repeats: int = 20, warmup: int = 5) -> float:
    """Median seconds of a forward pass on a batch of `batch_size` copies of the input.

    The warm-up runs let the backend build its kernels and the allocator its buffers for
    this shape; without them the first model measured at a new batch size looks slower."""
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch_size and repeats must be at least 1 and warmup at least 0, "
                         f"got {batch_size}, {repeats}, {warmup}")
    batch = example_input[:1].expand(batch_size, *example_input.shape[1:]).contiguous()
    was_training = model.training
    model.eval()
    synchronize = (torch.cuda.synchronize if batch.device.type == "cuda" else lambda: None)
    times = []
    for index in range(warmup + repeats):
        synchronize()
        start = time.perf_counter()
        model(batch)
        synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    model.train(was_training)
    return statistics.median(times)


def summary_table(models: dict[str, tuple[nn.Module, torch.Tensor]],
                  accuracy: dict[str, float] | None = None, latency: bool = True,
                  repeats: int = 20) -> pd.DataFrame:
    """One row per model: accuracy (if given), parameters, MFLOPs, size and latency at batch
    1 and 64. `models` maps a row name to (model, an example input of that model)."""
    rows = {}
    for name, (model, example_input) in models.items():
        row = {}
        if accuracy is not None and name in accuracy:
            row["accuracy %"] = 100 * accuracy[name]
        row["parameters"] = count_parameters(model)
        row["MFLOPs"] = count_flops(model, example_input) / 1e6
        row["size MB"] = size_on_disk(model) / 1e6
        if latency:
            row["latency b=1 ms"] = 1e3 * measure_latency(model, example_input, 1, repeats)
            row["latency b=64 ms"] = 1e3 * measure_latency(model, example_input, 64,
                                                           max(5, repeats // 2))
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def non_dominated(cost, value) -> list[bool]:
    """The Pareto front: True where no other point is at most as costly and at least as
    good, and strictly better in one of the two."""
    points = list(zip(cost, value))
    return [not any(c <= c0 and v >= v0 and (c < c0 or v > v0) for c, v in points)
            for c0, v0 in points]
