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
from .surgery import SurgeryError, remove_filters

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
    contents = stored.get("contents") if isinstance(stored, dict) else None
    if not (isinstance(contents, dict) and contents.get("format") == FORMAT):
        raise PrunedFileError(f"{path} was not written by save_pruned (no {FORMAT!r} marker)")
    if digest(contents) != stored.get("sha256"):
        raise PrunedFileError(f"{path}: its contents do not match their checksum (a damaged copy?)")
    _check_contents(contents, path)
    model = _rebuild(contents["architecture"], contents["plans"], contents["input_shape"], path)
    _check_shapes(model, contents["state_dict"], path)
    model.load_state_dict(contents["state_dict"])
    return model.to(device).eval()


ARCHITECTURE_FIELDS = {"name": str, "width": (int, float), "num_classes": int, "in_channels": int,
                       "image_size": (int, type(None)), "pretrained": bool}
MAX_SIDE = 256  # pixels of the traced example input's side (the course traces 28 to 224)
MAX_PLANS = 1_000


def _check_contents(contents: dict, path: Path) -> None:
    """Every field of a file in bounds before anything is built from it: a crafted file
    cannot make the loader allocate without limit, nor fail with an error that hides the file."""
    def refuse(problem):
        raise PrunedFileError(f"{path}: {problem}; not a pruned model this course can rebuild")

    architecture, plans, shape = (contents.get(k) for k in ("architecture", "plans", "input_shape"))
    if not isinstance(architecture, dict) or not isinstance(architecture.get("name"), str):
        refuse("its architecture is not build_model's arguments")
    for key, value in architecture.items():
        if key not in ARCHITECTURE_FIELDS or not isinstance(value, ARCHITECTURE_FIELDS[key]):
            refuse(f"its architecture has {key}={value!r}")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(n) is int for n in shape)
            and 1 <= shape[0] <= 64 and all(1 <= n <= MAX_SIDE for n in shape[1:])):
        refuse(f"its input shape {shape!r} is not [channels, height, width] of at most 64 x {MAX_SIDE} x {MAX_SIDE}")
    if not (isinstance(plans, list) and len(plans) <= MAX_PLANS and all(
            isinstance(plan, dict) and all(isinstance(conv, str) and isinstance(indices, list)
                                           and all(type(i) is int for i in indices) for conv, indices in plan.items())
            for plan in plans)):
        refuse(f"its plans are not a list of at most {MAX_PLANS} {{conv name: [filter indices]}}")
    state = contents.get("state_dict")
    if not (isinstance(state, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())):
        refuse("its weights are not a state dict of tensors")


def _rebuild(architecture: dict, plans: list[dict], shape: list[int], path: Path) -> nn.Module:
    try:
        model = build_model(**architecture)
    except (TypeError, ValueError, FileNotFoundError) as error:
        raise PrunedFileError(f"{path}: cannot build the dense model {architecture}: {error}") from error
    example = torch.zeros(1, *shape)
    for number, plan in enumerate(plans, 1):
        try:
            remove_filters(model, example, plan)
        except SurgeryError as error:
            raise PrunedFileError(f"{path}: its plan {number} of {len(plans)} does not apply to {architecture}: "
                                  f"{error}") from error
    return model


def _check_shapes(model: nn.Module, state: dict, path: Path) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        wrong = sorted(n for n in expected.keys() | found.keys() if expected.get(n) != found.get(n))
        raise PrunedFileError(f"{path}: the weights do not fit the architecture rebuilt from its plans "
                              f"({len(wrong)} tensors differ, first {wrong[0]}: "
                              f"{found.get(wrong[0])} stored, {expected.get(wrong[0])} rebuilt)")
