import time

import pytest

import torch
from torch import nn

from course_utils.metrics import (Timings, count_flops, count_parameters, measure_latency, non_dominated, operator_times,
                                  speedup, time_models,
                                  size_on_disk, summary_table)


def small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 4, 5, stride=1, groups=2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))


def test_flops_equal_a_hand_count_of_multiply_adds():
    x = torch.randn(5, 3, 16, 16)
    conv1 = 8 * 16 * 16 * (3 * 3 * 3)  # outputs x inputs per output
    conv2 = 4 * 4 * 4 * (8 // 2 * 5 * 5)  # grouped: each output sees 4 input channels
    linear = 64 * 10
    assert count_flops(small_net(), x) == 2 * (conv1 + conv2 + linear)


def test_a_transformers_flops_equal_a_hand_count_with_its_attention_products():
    """Every multiply-add of the small ViT: the patch embedding, the projections and MLPs, the
    attention's own products (queries x keys, weights x values: uncounted by torch on a CPU),
    and the head; with torch's attention (its fast path hid half of it) and the course's."""
    from course_utils.heads import remove_heads
    from course_utils.models import build_model

    model, x = build_model("vit", 0.25).eval(), torch.randn(1, 3, 32, 32)
    tokens, hidden, mlp, layers = 65, 64, 128, 6
    per_layer = tokens * (4 * hidden * hidden + 2 * hidden * mlp) + 2 * tokens * tokens * hidden
    expected = 2 * (layers * per_layer + 64 * 48 * hidden + hidden * 10)
    with torch.no_grad():
        assert count_flops(model, x) == expected
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.MultiheadAttention):
            model.set_submodule(name, remove_heads(module, []))
    assert count_flops(model, x) == expected and torch.backends.mha.get_fastpath_enabled()


def test_parameters_equal_a_hand_count():
    expected = (8 * 3 * 9 + 8) + (4 * 4 * 25 + 4) + (64 * 10 + 10)
    assert count_parameters(small_net()) == expected


def test_size_on_disk_holds_every_float():
    model = small_net()
    assert 4 * count_parameters(model) <= size_on_disk(model) < 4 * count_parameters(model) + 4096


class Sleeper(nn.Module):
    """A model whose forward pass takes a known time: 5 ms, plus 0.2 ms an image."""

    def forward(self, x):
        time.sleep(0.005 + 0.0002 * len(x))
        return x


def test_latency_measures_a_known_time_with_its_spread_threads_and_batch():
    before = torch.get_num_threads()
    measured = measure_latency(Sleeper(), torch.zeros(1, 3), batch_size=50, threads=1, min_run_time=0.05)
    assert 0.015 <= measured.median < 0.02 and 0 <= measured.spread < measured.median
    assert len(measured.repeats) == len(measured.passes) == 5 and min(measured.passes) >= 3  # 15 ms passes in 50 ms
    assert (measured.batch_size, measured.threads, measured.device) == (50, 1, "cpu")
    assert "5 of them)" in str(measured)
    assert torch.get_num_threads() == before  # the Timer's thread count does not leak
    assert measure_latency(Sleeper(), torch.zeros(1, 3), min_run_time=0.05).threads == before


def test_latency_grows_with_the_work_and_the_table_has_a_row_per_model():
    x = torch.randn(1, 3, 16, 16)
    model = small_net().train()
    one, many = (measure_latency(model, x, batch_size=b, min_run_time=0.05) for b in (1, 64))
    assert 0 < one.median < many.median < 1
    assert model.training  # restored
    table = summary_table({"a": (small_net(), x), "b": (small_net(), x)}, {"a": 0.5}, min_run_time=0.05)
    assert list(table.index) == ["a", "b"] and table.loc["a", "accuracy %"] == 50
    assert {"parameters", "MFLOPs", "size MB", "latency b=1 ms", "spread b=1 ms", "latency b=64 ms",
            "spread b=64 ms", "threads"} <= set(table.columns)


def test_the_table_flags_a_repeat_timed_by_one_pass():
    models = {"slow": (Logger("slow", 0.25, []), torch.zeros(1, 3)), "fast": (nn.Identity(), torch.zeros(1, 3))}
    table = summary_table(models, min_run_time=0.2, repeats=2)
    assert table.loc["slow", "single-pass repeats"] == "b=1, b=64"  # a 250 ms pass fills a 200 ms repeat alone
    assert table.loc["fast", "single-pass repeats"] == ""  # a microsecond pass fills it many times over
    assert table.loc["slow", "latency b=1 ms"] > 1000 * table.loc["fast", "latency b=1 ms"]


def test_the_pareto_front_keeps_only_the_points_nothing_beats():
    cost = [1, 2, 2, 3, 4, 4]
    value = [0.5, 0.7, 0.6, 0.7, 0.9, 0.9]
    # (2, 0.6) loses to (2, 0.7); (3, 0.7) to (2, 0.7); the two equal (4, 0.9) both stay
    assert non_dominated(cost, value) == [True, True, False, False, True, True]


def test_operator_times_find_the_convolutions_and_say_nothing_on_stderr(capfd):
    model, x = small_net(), torch.randn(1, 3, 16, 16)
    times = operator_times(model, x, batch_size=8)
    assert (times > 0).all() and any("conv" in name for name in times.index[:3])
    assert times.is_monotonic_decreasing
    captured = capfd.readouterr()
    assert "profiler_start" not in captured.err and "profiler_start" not in captured.out


class Logger(nn.Module):
    """Sleeps `seconds` a pass and writes its name in a shared log: the order it was timed in."""

    def __init__(self, name, seconds, log):
        super().__init__()
        self.name, self.seconds, self.log = name, seconds, log

    def forward(self, x):
        if not self.log or self.log[-1] != self.name:
            self.log.append(self.name)
        time.sleep(self.seconds)
        return x


def test_models_compared_are_timed_in_interleaved_repeats_and_their_speedup_has_an_interval():
    log = []
    models = {"slow": Logger("slow", 0.004, log), "fast": Logger("fast", 0.002, log)}
    timings = time_models(models, torch.zeros(1, 3), repeats=4, min_run_time=0.02, warmup=1)
    # after the warm-ups, runs of one model: slow fast | fast slow | slow fast | fast slow, the rotation
    # joining each repeat's last model to the next one's first (in a fixed order it would be 8 runs)
    assert log[2:] == ["slow", "fast", "slow", "fast", "slow"]
    assert all(len(t.repeats) == 4 for t in timings.values())
    gain = speedup(timings["slow"], timings["fast"])
    assert 1.6 < gain.value < 2.2 and gain.low <= gain.value <= gain.high and gain.clear
    assert "x (" in str(gain) and "repeats" in str(timings["fast"])


def test_a_speedup_interval_widens_with_the_spread_of_repeats_and_one_pass_is_flagged():
    steady = speedup(Timings((2.0, 2.0, 2.0), (5, 5, 5), 1, 1), Timings((1.0, 1.0, 1.0), (5, 5, 5), 1, 1))
    assert steady.value == pytest.approx(2.0) and steady.high - steady.low == pytest.approx(0.0)
    noisy = speedup(Timings((2.0, 1.0, 3.0), (5, 5, 5), 1, 1), Timings((1.0, 1.0, 1.0), (1, 5, 5), 1, 1))
    assert noisy.low < 1 < noisy.high and not noisy.clear  # the repeats cannot tell them apart
    assert Timings((1.0, 1.0, 1.0), (1, 5, 5), 1, 1).single_pass and not Timings((1.0,) * 3, (2, 5, 5), 1, 1).single_pass
    with pytest.raises(ValueError, match="at least 2"):
        time_models({"a": nn.Identity()}, torch.zeros(1, 3), repeats=1)
