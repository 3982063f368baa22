"""The course's baselines trained with the classic recipe and with the fast one, side by side.

For each baseline (model, dataset) at a profile (quick by default) it trains, or loads
from the checkpoint cache, the model twice: with `CLASSIC_RECIPES` on the profile's old
budget (20,000 images, 4 epochs, what the course used before November 2026) and with
`BASELINE_RECIPES` on the profile's own budget (what `baseline(...)` and every notebook
use, so this run also fills the cache `make course` reads). It prints test accuracy with
its 95% Wilson interval, minutes of training and training images per second.

    python benchmarks/baselines.py [--profile quick] [--models alexnet vgg16 resnet18 vgg16_gap]

Minutes come from the training record: a cached model shows the time it took when it
was trained (on whichever machine trained it). Results are appended, one JSON line per
baseline, to benchmarks/results/baselines-<profile>.jsonl as they finish.
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

from course_utils.device import pick_device
from course_utils.uncertainty import accuracy_interval
from course_utils.profiles import get_profile
from course_utils.train import CLASSIC_RECIPES, baseline, evaluate

DATASET = {"alexnet": "mnist"}  # everything else trains on CIFAR-10
CLASSIC_BUDGET = dict(baseline_train_size=20_000, epochs=4, baseline_epochs=())


def measure(model_name, profile, classic, device):
    chosen = replace(profile, **CLASSIC_BUDGET) if classic else profile
    recipe = CLASSIC_RECIPES[model_name] if classic else None
    base = baseline(model_name, DATASET.get(model_name, "cifar10"), chosen, device=device,
                    recipe=recipe)
    result = evaluate(base.model, base.test)
    low, high = accuracy_interval(result.accuracy, len(base.test))
    images = base.config["train_size"] * base.config["epochs"]
    return dict(model=model_name, recipe="classic" if classic else "fast",
                profile=profile.name, dataset=base.test.label, test_images=len(base.test),
                accuracy=result.accuracy, low=low, high=high,
                minutes=base.history.seconds / 60,
                images_per_second=images / base.history.seconds,
                train_images=base.config["train_size"], epochs=base.config["epochs"],
                batch_size=base.config["batch_size"], cached=base.loaded)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16", "resnet18", "vgg16_gap"])
    args = parser.parse_args()
    profile, device = get_profile(args.profile), pick_device()
    out = Path(__file__).parent / "results" / f"baselines-{profile.name}.jsonl"
    out.parent.mkdir(exist_ok=True)
    print(f"{'model':<10} {'recipe':<8} {'images x epochs':>16} {'test accuracy (95% CI)':>28} "
          f"{'minutes':>8} {'images/s':>9}")
    for model_name in args.models:
        for classic in (True, False):
            row = measure(model_name, profile, classic, device)
            with out.open("a") as file:
                file.write(json.dumps(row) + "\n")
            print(f"{model_name:<10} {row['recipe']:<8} "
                  f"{row['train_images']:>9,} x {row['epochs']:<4} "
                  f"{100 * row['accuracy']:>10.2f}% ({100 * row['low']:.2f}-{100 * row['high']:.2f}) "
                  f"{row['minutes']:>8.1f} {row['images_per_second']:>9.0f}"
                  f"{'  (cached)' if row['cached'] else ''}", flush=True)


if __name__ == "__main__":
    main()
