import pytest
import torch

from course_utils.device import autocast, autocast_dtype, pick_device, seed_everything


def test_pick_device_returns_an_available_device():
    device = pick_device()
    assert torch.zeros(1, device=device).device.type == device.type
    assert pick_device("cpu").type == "cpu"


def test_unknown_or_missing_devices_raise():
    with pytest.raises(ValueError, match="cuda, mps, cpu"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            pick_device("cuda")


def test_seeding_reproduces_random_streams():
    seed_everything(7)
    first = torch.rand(5), torch.randn(3)
    seed_everything(7)
    second = torch.rand(5), torch.randn(3)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_mixed_precision_only_on_cuda():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None
    with autocast(cpu):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    if torch.cuda.is_available():
        assert autocast_dtype(torch.device("cuda")) in (torch.bfloat16, torch.float16)
