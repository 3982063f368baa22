"""One prepared command for the first machine with a CUDA GPU: what `PROFILE="auto"` (which
picks `paper` there) will cost, measured in one go.

    python -m course_utils.harness.gpu_check [--out runs/gpu-check.json] [--dry-run]   (make gpu-check)

It runs every notebook in the `shapes` profile on the GPU (the papers' widths on a few
images: every code path of a paper run), then times one `paper` epoch of each of notebook
00's baselines (the full training split, at width 1, with the course's recipe), then a 2:4
sparse matrix product against the dense one (notebook 09's question, on the kernels only a
GPU has), and writes what it measured, step by step, to a JSON file. On a machine without CUDA it says so and
exits with status 2; `--dry-run` lists the steps without running them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from ..profiles import PROFILES

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
BASELINES = (("alexnet", "mnist"), ("vgg16", "cifar10"), ("resnet18", "cifar10"), ("vgg16_gap", "cifar10"))
# (out, in) of a weight times 2,048 tokens: notebook 09's GPT at the papers' width (its MLP), and a 7B-model layer
SEMI_STRUCTURED_SHAPES = ((1024, 256), (4096, 4096))


def steps() -> list[tuple[str, str]]:
    """(kind, what) of every measurement, in order."""
    return ([("shapes run", path.stem) for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
            + [("paper epoch", f"{model}/{dataset}") for model, dataset in BASELINES]
            + [("2:4 product", f"{rows}x{columns}") for rows, columns in SEMI_STRUCTURED_SHAPES])


def shapes_run(notebook: str, folder: Path) -> dict:
    from .execution import NotebookFailed, execute

    started = time.perf_counter()
    try:
        report = execute(NOTEBOOKS / f"{notebook}.ipynb", folder / f"{notebook}.ipynb",
                         {"PROFILE": "shapes", "RESULTS_FILE": str(folder / f"{notebook}.json")},
                         timeout=PROFILES["shapes"].cell_timeout)
        return dict(status="ok", seconds=time.perf_counter() - started, tries=report.tries)
    except NotebookFailed as failure:
        return dict(status=f"failed: {failure}"[:500], seconds=time.perf_counter() - started)


def paper_epoch(name: str, device: torch.device) -> dict:
    from ..data import load_dataset
    from ..models import build_model
    from ..train import BASELINE_RECIPES, DEFAULT_RECIPE, augments, fit

    model_name, dataset = name.split("/")
    data = load_dataset(dataset, "train", PROFILES["paper"].baseline_train_size, device=device)
    model = build_model(model_name, 1.0, data.num_classes, data.shape[0], data.shape[-1]).to(device)
    recipe = BASELINE_RECIPES.get(model_name, DEFAULT_RECIPE)
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    fit(model, data, epochs=1, augment=augments(data), progress=False, description=name, **recipe.as_config())
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return dict(status="ok", seconds=seconds, images=len(data), images_per_second=len(data) / seconds,
                paper_epochs=PROFILES["paper"].epochs_for(model_name, dataset))


def semi_structured_product(shape: str, device: torch.device) -> dict:
    """The median time of W @ X in half precision, W dense and W with a 2:4 pattern in torch's
    semi-structured format (NVIDIA's sparse tensor cores), and their largest difference."""
    from torch.sparse import to_sparse_semi_structured
    from torch.utils import benchmark

    from ..sparsity import magnitude_mask

    rows, columns = map(int, shape.split("x"))
    started = time.perf_counter()
    weight = torch.randn(rows, columns, device=device, dtype=torch.float16)
    weight = weight * magnitude_mask(weight, pattern=(2, 4))
    x = torch.randn(columns, 2048, device=device, dtype=torch.float16)
    try:
        sparse = to_sparse_semi_structured(weight)
    except (RuntimeError, ValueError) as refusal:  # a GPU before Ampere, or a shape its kernels do not take
        return dict(status=f"refused: {refusal}"[:300], seconds=time.perf_counter() - started)
    times = {name: benchmark.Timer("w @ x", globals=dict(w=w, x=x)).blocked_autorange(min_run_time=1).median
             for name, w in (("dense", weight), ("2:4", sparse))}
    difference = ((sparse @ x) - (weight @ x)).abs().max().item()
    return dict(status="ok", seconds=time.perf_counter() - started, dense_ms=1e3 * times["dense"],
                sparse_ms=1e3 * times["2:4"], speedup=times["dense"] / times["2:4"], max_difference=difference)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs") / "gpu-check.json")
    parser.add_argument("--dry-run", action="store_true", help="list the steps and stop")
    args = parser.parse_args(argv)
    if args.dry_run:
        for kind, what in steps():
            print(f"{kind}: {what}")
        return 0
    if not torch.cuda.is_available():
        print("make gpu-check measures the paper profile on a CUDA GPU, and this machine has none "
              "(torch.cuda.is_available() is False). Run it where nvidia-smi lists a GPU; "
              "--dry-run lists what it would run.", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    folder = args.out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    record = dict(gpu=torch.cuda.get_device_name(device), torch=torch.__version__,
                  python=platform.python_version(), steps=[])
    for kind, what in steps():
        print(f"{kind}: {what} ...", flush=True)
        measure = {"shapes run": lambda: shapes_run(what, folder), "paper epoch": lambda: paper_epoch(what, device),
                   "2:4 product": lambda: semi_structured_product(what, device)}[kind]
        result = measure()
        record["steps"].append(dict(kind=kind, what=what, **result))
        args.out.write_text(json.dumps(record, indent=2))  # after every step: a crash keeps the rest
        print(f"  {result['status']} in {result['seconds']:.0f} s", flush=True)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
