"""Run profiles: how big a notebook's run is, defined in one place.

`smoke` is for tests and CI (about 20 s to 2 minutes a notebook on 2 CPU cores, baselines
cached), `shapes` for tests too (the `paper` widths on 128 images: the code paths of a
full-width run, with meaningless accuracies), `quick` for a laptop CPU (aimed at 15
minutes a notebook once its baselines are cached; notebook 06 takes 21), `paper` for a CUDA GPU (the papers' full datasets and widths).
`auto` picks `paper` on CUDA and `quick` otherwise; the environment variable
COURSE_PROFILE overrides `auto`, so that a stored notebook (PROFILE = "auto") runs as
`smoke` under the tests.
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
    train_size: int | None  # training images a notebook fine-tunes and trains on
    baseline_train_size: int | None  # training images of a cached baseline (train_size first)
    test_size: int | None  # test images used for every reported accuracy (and at most as many validation images)
    calibration_size: int  # images used to score filters (criteria, oracles)
    width: float  # width multiplier of every course model
    epochs: int  # epochs to train a model from scratch
    finetune_epochs: int  # epochs of fine-tuning after a pruning step
    batch_size: int
    seeds: tuple[int, ...]  # seeds for comparisons that report a spread
    # exceptions to `epochs`: (model, epochs) or ("model/dataset", epochs), the latter first
    baseline_epochs: tuple[tuple[str, int], ...] = ()
    brief: bool = False  # notebooks run fewer budgets, models and seeds (the test profiles)
    gpt_steps: int = 1_000  # training steps of notebook 09's small GPT (32 windows of 128 bytes each)
    # seconds one cell may run before a headless run (course_utils.harness.execution) gives up on it and
    # retries the notebook once: several times the longest cell measured in the profile
    cell_timeout: int = 900

    def __post_init__(self):
        if None not in (self.train_size, self.baseline_train_size) and \
                self.train_size > self.baseline_train_size or \
                self.baseline_train_size is not None and self.train_size is None:
            raise ValueError(f"profile {self.name!r}: a notebook's training images must be among "
                             f"its baselines' (train_size <= baseline_train_size)")

    def epochs_for(self, model_name: str, dataset: str | None = None) -> int:
        """Epochs of the cached baseline `model_name` (trained on `dataset`)."""
        exceptions = dict(self.baseline_epochs)
        return exceptions.get(f"{model_name}/{dataset}", exceptions.get(model_name, self.epochs))


PROFILES = {
    "smoke": Profile("smoke", train_size=1_000, baseline_train_size=8_000, test_size=500,
                     calibration_size=64, width=0.25, epochs=2, finetune_epochs=1,
                     batch_size=128, seeds=(0,),
                     baseline_epochs=(("alexnet/mnist", 8), ("vgg16", 4), ("vgg16_gap", 4), ("vit", 1)),
                     brief=True, gpt_steps=30),
    # the papers' widths (so their shapes and memory are exercised) on a few images; its
    # accuracies mean nothing, so 32 images judge them (every evaluation runs at full width)
    "shapes": Profile("shapes", train_size=128, baseline_train_size=128, test_size=32,
                      calibration_size=8, width=1.0, epochs=1, finetune_epochs=1,
                      batch_size=128, seeds=(0,), brief=True, gpt_steps=2),
    # 3 to 6 minutes a baseline on 2 CPU cores (the README's table, benchmarks/baselines.py)
    "quick": Profile("quick", train_size=20_000, baseline_train_size=None, test_size=10_000,
                     calibration_size=512, width=0.25, epochs=4, finetune_epochs=1,
                     batch_size=128, seeds=(0, 1), cell_timeout=3_600,
                     # SqueezeNet 1.1 at width 0.25 (47k parameters) learns slowly: 15 epochs, about 3 minutes;
                     # notebook 08's ViT took 12 minutes for 4 epochs (52% on test, 2026-12-06): 2 epochs
                     baseline_epochs=(("alexnet/mnist", 6), ("vgg16", 7), ("vgg16_gap", 7), ("squeezenet1_1", 15),
                                      ("vit", 2)),
                     # notebook 09's GPT: 0.23 to 0.32 s a step on 2 cores (1,200 steps took 6.5 minutes beside
                     # another job, validation perplexity 4.56): 1,000 steps
                     gpt_steps=1_000),
    "paper": Profile("paper", train_size=None, baseline_train_size=None, test_size=None,
                     calibration_size=2_048, width=1.0, epochs=30, finetune_epochs=3,
                     batch_size=128, seeds=(0, 1, 2), cell_timeout=6 * 3_600, gpt_steps=20_000),
}


def get_profile(name: str = "auto") -> Profile:
    """Resolve a profile name ("auto" or one of PROFILES) to its budget."""
    if name == "auto":
        name = os.environ.get(PROFILE_ENV) or ("paper" if torch.cuda.is_available() else "quick")
    if name not in PROFILES:
        allowed = ", ".join(["auto", *PROFILES])
        raise ValueError(f"unknown profile {name!r}; choose one of {allowed} "
                         f"(or set {PROFILE_ENV} to one of {', '.join(PROFILES)})")
    return PROFILES[name]
