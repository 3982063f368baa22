"""Device choice, seeding and mixed precision.

Every function takes the device explicitly, so the same notebook runs on CUDA, Apple's
MPS or the CPU. Mixed precision is used on CUDA only: bfloat16 where the GPU supports
it, float16 (with a gradient scaler, see `train.fit`) elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

DEVICE_TYPES = ("cuda", "mps", "cpu")


def pick_device(prefer: str | None = None) -> torch.device:
    """The best available device, or `prefer` ("cuda", "mps", "cpu") if it is available."""
    if prefer is not None:
        if prefer not in DEVICE_TYPES:
            raise ValueError(f"unknown device {prefer!r}; choose one of {', '.join(DEVICE_TYPES)}")
        if not _available(prefer):
            raise ValueError(f"device {prefer!r} is not available on this machine")
        return torch.device(prefer)
    return torch.device(next(kind for kind in DEVICE_TYPES if _available(kind)))


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters (or, without any, its buffers) live; the CPU for a model
    that has neither (nothing to move)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return True


def describe_device(device: torch.device) -> str:
    """One line naming the device, for a notebook's first output."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu: {torch.get_num_threads()} threads"
    return device.type


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch; with `deterministic`, also ask for deterministic kernels.

    Returns a CPU generator seeded the same way, for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype used on `device`, or None for full precision."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device):
    """A context manager running the forward pass in mixed precision on CUDA, plain elsewhere."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)
