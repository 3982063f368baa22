"""Run profiles: how big a notebook's run is, defined in one place.

`smoke` is for tests and CI (20 s to 4 minutes a notebook on 2 CPU cores), `quick`
for a laptop CPU (minutes, trends visible), `paper` for a CUDA GPU (the papers' full
datasets and widths). `auto` picks `paper` on CUDA and `quick` otherwise; the
environment variable COURSE_PROFILE overrides `auto`, so that nbval runs the stored
notebooks (which say PROFILE = "auto") as `smoke`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

PROFILE_ENV = "COURSE_PROFILE"


@dataclass(frozen=True)
class Profile:
    """The budget of one run. `None` as a size means the whole split."""

    name: str
    train_size: int | None  # training images drawn from the train split
    test_size: int | None  # test images used for every reported accuracy
    calibration_size: int  # images used to score filters (criteria, oracles)
    width: float  # width multiplier of every course model
    epochs: int  # epochs to train a baseline from scratch
    finetune_epochs: int  # epochs of fine-tuning after a pruning step
    batch_size: int
    seeds: tuple[int, ...]  # seeds for comparisons that report a spread


PROFILES = {
    "smoke": Profile("smoke", train_size=4_000, test_size=1_000, calibration_size=64,
                     width=0.25, epochs=2, finetune_epochs=1, batch_size=128, seeds=(0,)),
    "quick": Profile("quick", train_size=20_000, test_size=10_000, calibration_size=512,
                     width=0.25, epochs=4, finetune_epochs=1, batch_size=128, seeds=(0, 1)),
    "paper": Profile("paper", train_size=None, test_size=None, calibration_size=2_048,
                     width=1.0, epochs=30, finetune_epochs=3, batch_size=128,
                     seeds=(0, 1, 2)),
}


def get_profile(name: str = "auto") -> Profile:
    """Resolve a profile name ("auto", "smoke", "quick" or "paper") to its budget."""
    if name == "auto":
        name = os.environ.get(PROFILE_ENV) or ("paper" if torch.cuda.is_available() else "quick")
    if name not in PROFILES:
        allowed = ", ".join(["auto", *PROFILES])
        raise ValueError(f"unknown profile {name!r}; choose one of {allowed} "
                         f"(or set {PROFILE_ENV} to one of {', '.join(PROFILES)})")
    return PROFILES[name]
