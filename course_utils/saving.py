"""A pruned model that outlives its notebook: saved as what rebuilds it, not as a pickle.

    save_pruned("vgg16-pruned.pt", model, [plan], dict(name="vgg16", width=0.25), example)
    model = load_pruned("vgg16-pruned.pt")

The file holds the dense architecture (`models.build_model`'s arguments), the removal plans
in the order they were applied (an iterative pruning applies several, each in the indices
of the model it cut), the example input's shape the surgery traced with, and the state
dict. Loading builds the dense model, applies the plans with the same surgery, and loads
the weights: `torch.load(weights_only=True)` throughout, so no code is unpickled, and a
file whose weights do not fit the rebuilt architecture, or whose contents fail their
checksum, is refused with the file's name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .models import build_model
from .storage import atomic_save, digest
from .surgery import remove_filters

FORMAT = "course_utils.pruned/1"


class PrunedFileError(ValueError):
    """The file is not a pruned model this course can rebuild."""


def save_pruned(path: Path, model: nn.Module, plans: list[dict], architecture: dict,
                example_input: torch.Tensor) -> Path:
    """Save `model`, the dense `architecture` (build_model's arguments) cut by `plans` in
    order, so that `load_pruned` rebuilds it. Checks first that the plans do rebuild a model
    of the same shapes, so that a file that cannot be loaded is never written."""
    plans = [{conv: [int(i) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
              for conv, indices in plan.items()} for plan in plans]
    shape = list(example_input.shape[1:])
    rebuilt = _rebuild(architecture, plans, shape, Path(path))
    _check_shapes(rebuilt, model.state_dict(), Path(path))
    contents = {"format": FORMAT, "architecture": dict(architecture), "plans": plans,
                "input_shape": shape,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_save({"contents": contents, "sha256": digest(contents)}, Path(path))
    return Path(path)


def load_pruned(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """The model `save_pruned` stored at `path`, rebuilt and on `device`, in eval mode."""
    path = Path(path)
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (truncated, random bytes, not a torch file)
        raise PrunedFileError(f"{path} cannot be read as a pruned model ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no message'})") from error
    if not (isinstance(stored, dict) and stored.get("contents", {}).get("format") == FORMAT):
        raise PrunedFileError(f"{path} was not written by save_pruned (no {FORMAT!r} marker)")
    contents = stored["contents"]
    if digest(contents) != stored.get("sha256"):
        raise PrunedFileError(f"{path}: its contents do not match their checksum (a damaged copy?)")
    model = _rebuild(contents["architecture"], contents["plans"], contents["input_shape"], path)
    _check_shapes(model, contents["state_dict"], path)
    model.load_state_dict(contents["state_dict"])
    return model.to(device).eval()


def _rebuild(architecture: dict, plans: list[dict], shape: list[int], path: Path) -> nn.Module:
    try:
        model = build_model(**architecture)
    except (TypeError, ValueError) as error:
        raise PrunedFileError(f"{path}: cannot build the dense model {architecture}: {error}") from error
    example = torch.zeros(1, *shape)
    for plan in plans:
        remove_filters(model, example, plan)
    return model


def _check_shapes(model: nn.Module, state: dict, path: Path) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        wrong = sorted(n for n in expected.keys() | found.keys() if expected.get(n) != found.get(n))
        raise PrunedFileError(f"{path}: the weights do not fit the architecture rebuilt from its plans "
                              f"({len(wrong)} tensors differ, first {wrong[0]}: "
                              f"{found.get(wrong[0])} stored, {expected.get(wrong[0])} rebuilt)")
