"""The criteria that run the network once per filter, naive against fast: paper 03's KL
oracle (one full forward per filter, against a cached front, the next layer's output minus
each filter's term and batched filters) and paper 01's deletion of groups of 4 filters
(one full forward per group, against a cached front and batched groups): seconds,
speed-up and largest score difference.

    python benchmarks/oracles.py [--profile smoke] [--images 128] [--width 0.25]

It scores the profile's VGG-16 (GAP head) checkpoint, training it first if it is missing.
"""

import argparse
import dataclasses
import functools
import time

import torch

from course_utils.data import load_dataset
from course_utils.device import pick_device
from course_utils.profiles import get_profile
from course_utils.scores import deletion_effect, kl_oracle
from course_utils.train import baseline


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--images", type=int, default=None,
                        help="calibration images (default: the profile's)")
    parser.add_argument("--width", type=float, default=None,
                        help="width multiplier (default: the profile's)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    if args.width:
        profile = dataclasses.replace(profile, width=args.width)
    device = pick_device()
    model = baseline("vgg16_gap", "cifar10", profile, device=device).model
    images = load_dataset("cifar10", "val", args.images or profile.calibration_size,
                          device=device)
    filters = sum(conv.out_channels for conv in model.modules()
                  if isinstance(conv, torch.nn.Conv2d))
    print(f"VGG-16 (GAP head, width {profile.width}, {filters} filters), "
          f"{len(images)} calibration images, {torch.get_num_threads()} threads")
    oracles = {"KL oracle": kl_oracle, "deletion of groups of 4": functools.partial(deletion_effect, group_size=4)}
    for name, score in oracles.items():
        fast, fast_seconds = timed(lambda: score(model, images))
        naive, naive_seconds = timed(lambda: score(model, images, fast=False))
        difference = max((fast[conv] - naive[conv]).abs().max().item() for conv in naive)
        print(f"{name}: naive {naive_seconds:.1f} s | fast {fast_seconds:.1f} s | "
              f"speed-up {naive_seconds / fast_seconds:.1f}x | largest score difference "
              f"{difference:.1e} (largest score {max(s.max().item() for s in naive.values()):.3f})")


if __name__ == "__main__":
    main()
