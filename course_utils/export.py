"""A pruned model outside PyTorch: exported to ONNX and run by onnxruntime.

    path = export_onnx(model, example_input, "vgg16-pruned.onnx")
    session = onnx_session(path, threads=2)
    onnx_difference(model, session, example_input)       # largest |ONNX - PyTorch|
    onnx_latency(session, example_input, batch_size=64)  # a metrics.Timings

The export traces the model with `torch.export` (torch.onnx's dynamo exporter) with the
batch dimension left free, so one file serves batch 1 and batch 64. A pruned model is an
ordinary model of smaller layers: nothing of the surgery is needed to run it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from .device import model_device
from .metrics import Timings, checked_repeats, interleaved, repeated

INPUT, OUTPUT = "images", "logits"


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path) -> Path:
    """Write `model` (in eval mode, on the CPU) as ONNX to `path`, through a temporary file
    and a rename; the exporter's progress lines are kept quiet unless it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where it is
    # two images: an example of batch 1 would make torch.export specialise the batch to 1
    example = repeated(example_input.cpu(), 2)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), torch.no_grad():
            exported = torch.onnx.export(
                model, (example,), input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), dynamo=True)
            exported.save(temporary)
        os.replace(temporary, path)
    except Exception as error:
        Path(temporary).unlink(missing_ok=True)
        raise RuntimeError(f"exporting {type(model).__name__} to {path} failed: {error}\n"
                           f"{chatter.getvalue()[-2000:]}") from error
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime session on the CPU with `threads` intra-op threads (torch's count by default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def onnx_difference(model: nn.Module, session, example_input: torch.Tensor,
                    batch_sizes=(1, 7)) -> float:
    """The largest absolute difference between ONNX's and PyTorch's logits, over random inputs
    shaped like `example_input` at each batch size."""
    model = model.eval()
    device = model_device(model)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, *example_input.shape[1:], generator=generator)
        got = torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])
        worst = max(worst, (got - model(x.to(device)).float().cpu()).abs().max().item())
    return worst


def onnx_latency(session, example_input: torch.Tensor, batch_size: int = 1, repeats: int = 5,
                 min_run_time: float = 0.1, warmup: int = 3) -> Timings:
    """Like `metrics.measure_latency`, for an onnxruntime session (its own thread count)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    checked_repeats(repeats)
    feed = {INPUT: repeated(example_input.cpu(), batch_size).numpy()}
    for _ in range(warmup):
        session.run([OUTPUT], feed)
    timer = benchmark.Timer("session.run(names, feed)",
                            globals=dict(session=session, names=[OUTPUT], feed=feed))
    runs = interleaved({"onnx": timer}, repeats, min_run_time)["onnx"]
    return Timings.of(runs, batch_size, session.get_session_options().intra_op_num_threads, "cpu (onnxruntime)")
