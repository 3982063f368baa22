"""What a pruned model costs: parameters, FLOPs, bytes on disk, measured latency.

FLOPs come from `torch.utils.flop_counter`, which counts a multiply-add as 2 FLOPs
(many papers count it as 1: their "FLOPs" are our FLOPs / 2). Latency is measured,
not estimated, with `torch.utils.benchmark.Timer`: warm-up runs, CUDA synchronised, a
stated thread count, and several independent repeats (each the median of timed blocks),
interleaved across the models compared (`time_models`), since the same model timed twice can
differ by far more than the spread within one repeat; a speed-up is given with the interval of
the paired repeats (`speedup`). `operator_times` says where the time goes
(`torch.profiler`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import statistics
import sys
from collections.abc import Hashable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils import benchmark
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count
from scipy import stats

from .uncertainty import Ratio


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """The CPU kernel of scaled_dot_product_attention, which torch's counter does not know (the
    products of queries with keys and of weights with values went uncounted on a CPU)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@torch.no_grad()
def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one forward pass of one image (2 per multiply-add), in eval mode. An
    nn.MultiheadAttention runs its plain path while counted: its fused fast path, taken in
    eval mode without gradients, hides half its multiply-adds from the counter."""
    was_training, fast_path = model.training, torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            model(example_input[:1])
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        model.train(was_training)
    return counter.get_total_flops()


def size_on_disk(model: nn.Module) -> int:
    """Bytes of the model's state_dict saved with torch.save."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def repeated(example_input: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A batch of `batch_size` copies of the first image: what every timing here runs on."""
    return example_input[:1].expand(batch_size, *example_input.shape[1:]).contiguous()


def _checked_threads(batch_size: int, threads: int | None, warmup: int, min_run_time: float) -> int:
    """The thread count to time on (torch's when None), once the timing settings are checked."""
    threads = torch.get_num_threads() if threads is None else threads
    if batch_size < 1 or threads < 1 or warmup < 0 or not min_run_time > 0:
        raise ValueError(f"batch_size and threads must be at least 1, warmup at least 0 and "
                         f"min_run_time positive; got {batch_size}, {threads}, {warmup}, {min_run_time}")
    return threads


def checked_repeats(repeats) -> int:
    """`repeats`, once checked: a whole number of at least 2, since a spread needs two."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be a whole number of at least 2 (the spread needs two); got {repeats!r}")
    return repeats


@dataclass(frozen=True)
class Timings:
    """One model's forward pass timed in independent repeats (each the median of its timed
    blocks): the spread between repeats is what a difference between models must exceed."""

    repeats: tuple[float, ...]  # seconds, one median per repeat
    passes: tuple[int, ...]  # forward passes timed in each repeat
    batch_size: int
    threads: int
    device: str = "cpu"

    @classmethod
    def of(cls, runs: list[benchmark.Measurement], batch_size: int, threads: int, device: str) -> Timings:
        """From the `blocked_autorange` measurements of one model's repeats."""
        return cls(tuple(m.median for m in runs), tuple(len(m.times) * m.number_per_run for m in runs),
                   batch_size, threads, device)

    @property
    def median(self) -> float:
        return statistics.median(self.repeats)

    @property
    def spread(self) -> float:
        """Seconds between the fastest and the slowest repeat."""
        return max(self.repeats) - min(self.repeats)

    @property
    def single_pass(self) -> bool:
        """A repeat timed by one forward pass: a pass slower than `min_run_time`, measured once."""
        return min(self.passes) < 2

    def __str__(self) -> str:
        return (f"{1e3 * self.median:.2f} ms (repeats {1e3 * min(self.repeats):.2f}-{1e3 * max(self.repeats):.2f}, "
                f"{len(self.repeats)} of them{', one a single pass' if self.single_pass else ''})")


def speedup(baseline: Timings, other: Timings, confidence: float = 0.95) -> Ratio:
    """How many times faster `other` ran: baseline's time over other's, with the t interval of
    the mean log ratio of the paired repeats (`time_models` interleaves them)."""
    if len(baseline.repeats) != len(other.repeats) or len(baseline.repeats) < 2:
        raise ValueError("a speed-up pairs the repeats of two models timed together: at least 2 each")
    logs = [math.log(b / o) for b, o in zip(baseline.repeats, other.repeats)]
    mean, n = statistics.fmean(logs), len(logs)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(logs) / math.sqrt(n)
    return Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half))


def interleaved(timers: dict[Hashable, benchmark.Timer], repeats: int, min_run_time: float) -> dict[Hashable, list]:
    """Each Timer's `blocked_autorange` results, `repeats` of them, in a rotating order (A B C,
    then B C A, ...): whatever the machine does meanwhile falls on every timer alike."""
    measured: dict[Hashable, list] = {key: [] for key in timers}
    order = list(timers)
    for repeat in range(checked_repeats(repeats)):
        for key in order[repeat % len(order):] + order[:repeat % len(order)]:
            measured[key].append(timers[key].blocked_autorange(min_run_time=min_run_time))
    return measured


def _warm_timer(model: nn.Module, batch: torch.Tensor, threads: int, warmup: int) -> benchmark.Timer:
    """A Timer of `model` (put in eval mode) on `batch`, after `warmup` untimed passes.

    The warm-up runs let the backend build its kernels and the allocator its buffers for
    this shape; without them the first model measured at a new batch size looks slower.
    The Timer synchronises CUDA around each block."""
    model.eval()
    for _ in range(warmup):
        model(batch)
    return benchmark.Timer("model(batch)", globals=dict(model=model, batch=batch), num_threads=threads)


@torch.no_grad()
def _timed(models: dict[Hashable, tuple[nn.Module, torch.Tensor]], batch_size: int, threads: int | None,
           repeats: int, min_run_time: float, warmup: int) -> dict[Hashable, Timings]:
    """`time_models` where each model runs on its own example input."""
    checked_repeats(repeats)
    threads = _checked_threads(batch_size, threads, warmup, min_run_time)
    modes = {key: model.training for key, (model, _) in models.items()}
    batches = {key: repeated(x, batch_size) for key, (_, x) in models.items()}
    timers = {key: _warm_timer(model, batches[key], threads, warmup) for key, (model, _) in models.items()}
    measured = interleaved(timers, repeats, min_run_time)
    for key, (model, _) in models.items():
        model.train(modes[key])
    return {key: Timings.of(runs, batch_size, threads, batches[key].device.type) for key, runs in measured.items()}


def time_models(models: dict[Hashable, nn.Module], example_input: torch.Tensor, batch_size: int = 1,
                threads: int | None = None, repeats: int = 5, min_run_time: float = 0.1,
                warmup: int = 3) -> dict[Hashable, Timings]:
    """Each model's forward pass, in eval mode, on a batch of `batch_size` copies of the input,
    timed in `repeats` independent repeats interleaved across the models (`interleaved`), each
    the median of `torch.utils.benchmark` blocks over `min_run_time` seconds on `threads` CPU
    threads (all of torch's by default; the Timer's own default is one)."""
    return _timed({key: (model, example_input) for key, model in models.items()}, batch_size, threads, repeats,
                  min_run_time, warmup)


def measure_latency(model: nn.Module, example_input: torch.Tensor, batch_size: int = 1,
                    threads: int | None = None, repeats: int = 5, min_run_time: float = 0.1,
                    warmup: int = 3) -> Timings:
    """One model timed as `time_models` times several: to compare it with another, time them
    together there, so that the repeats pair."""
    return time_models({"model": model}, example_input, batch_size, threads, repeats, min_run_time, warmup)["model"]


def summary_table(models: dict[str, tuple[nn.Module, torch.Tensor]],
                  accuracy: dict[str, float] | None = None, latency: bool = True,
                  repeats: int = 5, min_run_time: float = 0.1) -> pd.DataFrame:
    """One row per model: accuracy (if given), parameters, MFLOPs, size and latency at batch
    1 and 64: the median of `repeats` repeats interleaved across the models, the spread between
    the fastest and slowest repeat, and the threads they ran on; a column names the batch sizes
    where a repeat was timed by a single pass, where any was. `models` maps a row name to
    (model, an example input of that model)."""
    rows = {}
    for name, (model, example_input) in models.items():
        row = {}
        if accuracy is not None and name in accuracy:
            row["accuracy %"] = 100 * accuracy[name]
        row["parameters"] = count_parameters(model)
        row["MFLOPs"] = count_flops(model, example_input) / 1e6
        row["size MB"] = size_on_disk(model) / 1e6
        rows[name] = row
    for batch_size in (1, 64) if latency else ():
        for name, timed in _timed(models, batch_size, None, repeats, min_run_time, 3).items():
            rows[name].update({f"latency b={batch_size} ms": 1e3 * timed.median,
                               f"spread b={batch_size} ms": 1e3 * timed.spread, "threads": timed.threads})
            if timed.single_pass:
                earlier = rows[name].get("single-pass repeats")
                rows[name]["single-pass repeats"] = f"{earlier}, b={batch_size}" if earlier else f"b={batch_size}"
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.fillna({"single-pass repeats": ""}) if "single-pass repeats" in table else table


def non_dominated(cost, value) -> list[bool]:
    """The Pareto front: True where no other point is at most as costly and at least as
    good, and strictly better in one of the two."""
    points = list(zip(cost, value))
    return [not any(c <= c0 and v >= v0 and (c < c0 or v > v0) for c, v in points)
            for c0, v0 in points]


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what C++ libraries write straight to file descriptor 2 (the profiler's
    libkineto announces every start and stop there, and a missing GPU as an error)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@torch.no_grad()
def operator_times(model: nn.Module, example_input: torch.Tensor, batch_size: int = 1,
                   repeats: int = 3) -> pd.Series:
    """Milliseconds per forward pass spent in each operator (its own time, children excluded),
    from `torch.profiler` over `repeats` passes after a warm-up one, in eval mode; on CUDA,
    the time on the device."""
    batch = repeated(example_input, batch_size)
    cuda = batch.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    was_training = model.training
    model.eval()
    model(batch)
    with _quiet_native_stderr(), profile(activities=activities) as recorded:
        for _ in range(repeats):
            model(batch)
    model.train(was_training)
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    times = pd.Series({event.key: getattr(event, field) / 1e3 / repeats for event in recorded.key_averages()})
    return times[times > 0].sort_values(ascending=False)
