"""Training and evaluation, and baselines cached as checkpoints.

`fit` is Nesterov SGD under a warm-up-and-decay (or cosine, or constant) schedule, with
one progress bar and a `History` to plot; `Recipe` holds how baselines are trained (the
fast CIFAR-10 recipes' tricks that pay on a CPU). `evaluate` gives overall and per-class
accuracy, and each image's outcome for paired comparisons, in one pass. `baseline(...)` is how every notebook gets its starting model:
it loads the checkpoint trained for exactly that configuration, or trains it at the
profile's budget and saves it (atomically, under a name derived from the configuration).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import CROP_PADDING, ImageData, load_dataset, require_images
from .device import autocast, autocast_dtype, model_device
from .models import build_model
from .profiles import Profile
from .storage import checked_load, checked_save, data_home, exclusive

SCHEDULES = ("triangle", "onecycle", "cosine", "constant")
MAX_LR = 10.0  # a rate past it is a typo, not a choice
MAX_EPOCHS = 10_000
CHECKPOINT_FORMAT = 2  # bump when the training recipe changes, so old checkpoints are not reused


@dataclass
class Evaluation:
    accuracy: float  # fraction of images classified correctly
    per_class: list[float]  # accuracy on the images of each class
    loss: float  # mean cross-entropy
    predictions: torch.Tensor  # predicted class of every image (on the CPU)
    correct: torch.Tensor  # whether each image was classified correctly (bool, on the CPU),
    # for paired comparisons of two models on the same images (`uncertainty.paired_difference`)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, batch_size: int = 256) -> Evaluation:
    """Accuracy overall and per class, and mean loss, on all of `data` (eval mode).
    Batches of 256 ran 1.45x faster than of 1,000 on 2 CPU cores (VGG-16 and ResNet-18)."""
    require_images(data, "the data")
    device = model_device(model)
    was_training = model.training
    model.eval()
    predictions, loss_sum = [], torch.zeros((), device=device)
    for images, labels in data.batches(batch_size, device=device):
        with autocast(device):
            logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        predictions.append(logits.argmax(1))
    model.train(was_training)
    predicted = torch.cat(predictions)
    labels = data.to(device).labels
    correct = (predicted == labels).float()
    counts = torch.bincount(labels, minlength=data.num_classes).clamp(min=1)
    per_class = torch.bincount(labels, weights=correct, minlength=data.num_classes) / counts
    return Evaluation(correct.mean().item(), per_class.tolist(),
                      (loss_sum / len(data)).item(), predicted.cpu(), correct.bool().cpu())


@dataclass
class History:
    step_loss: list[float] = field(default_factory=list)  # training loss of every batch
    epoch_loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    val_accuracy: list[float] = field(default_factory=list)  # after each epoch, if val given
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def fit(model: nn.Module, train_data: ImageData, val_data: ImageData | None = None, *,
        epochs: int, lr: float, batch_size: int = 128, momentum: float = 0.9,
        weight_decay: float = 5e-4, schedule: str = "triangle", label_smoothing: float = 0.0,
        augment: bool = False, padding: int = CROP_PADDING, decay_norms: bool = False,
        seed: int = 0, progress: bool = True, description: str = "training") -> History:
    """Train `model` on its own device with Nesterov SGD; returns the loss history.

    In place: the model ends in eval mode and in channels-last memory format (faster
    convolutions on CPUs and GPUs, same numbers). Batch-norm parameters and biases get no
    weight decay unless `decay_norms` (decaying them only fights the normalisation).
    `augment`: crops of the image padded by `padding` pixels, and flips where valid.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(f"epochs must be a whole number from 1 to {MAX_EPOCHS:,}, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr <= MAX_LR:
        raise ValueError(f"lr must be a number in (0, {MAX_LR:g}] (larger rates diverge on every course model), "
                         f"got {lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    require_images(train_data, "train_data")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameters: nothing to fit")
    device = model_device(model)
    model.to(memory_format=torch.channels_last)
    batches = train_data.batches(batch_size, shuffle=True, augment=augment, seed=seed,
                                 device=device, padding=padding)
    optimizer = torch.optim.SGD(_parameter_groups(model, weight_decay, decay_norms), lr=lr,
                                momentum=momentum, nesterov=momentum > 0)
    scheduler = _scheduler(optimizer, schedule, lr, epochs * len(batches))
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(device) == torch.float16)
    history, start = History(), time.perf_counter()
    bar = tqdm(total=epochs * len(batches), desc=description, disable=not progress,
               leave=False)
    for epoch in range(epochs):
        model.train()
        losses = []
        for images, labels in batches:
            with autocast(device):
                loss = nn.functional.cross_entropy(model(images), labels,
                                                   label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.detach())
            bar.update()
        epoch_losses = torch.stack(losses).float().cpu()
        history.step_loss += epoch_losses.tolist()
        history.epoch_loss.append(epoch_losses.mean().item())
        if not math.isfinite(history.epoch_loss[-1]):
            bar.close()
            raise FloatingPointError(f"the training loss became {history.epoch_loss[-1]} in epoch {epoch + 1}: "
                                     f"the model diverged (lr={lr} is likely too high); nothing was saved")
        if val_data is not None:
            history.val_accuracy.append(evaluate(model, val_data).accuracy)
        bar.set_postfix(loss=f"{history.epoch_loss[-1]:.3f}")
    bar.close()
    model.eval()
    broken = [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]
    if broken:  # the losses were measured before each step: the last step can still blow up
        raise FloatingPointError(f"the weights became infinite or NaN in the last steps ({broken[0]}"
                                 f"{f' and {len(broken) - 1} more' if len(broken) > 1 else ''}): the model "
                                 f"diverged (lr={lr} is likely too high); nothing was saved")
    history.seconds = time.perf_counter() - start
    return history


def _parameter_groups(model: nn.Module, weight_decay: float, decay_norms: bool) -> list[dict]:
    """Weights of convolutions and linear layers decay; vectors (batch-norm scales and
    shifts, biases) decay only if `decay_norms`."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in parameters if p.ndim > 1]
    vectors = [p for p in parameters if p.ndim <= 1]
    return [dict(params=matrices, weight_decay=weight_decay),
            dict(params=vectors, weight_decay=weight_decay if decay_norms else 0.0)]


def finetune(model: nn.Module, train_data: ImageData, epochs: int = 1, *, lr: float = 0.01,
             batch_size: int = 128, seed: int = 0) -> nn.Module:
    """The course's fine-tuning after a pruning step, the same for every pruned model a
    notebook compares: SGD from a small rate down a cosine, crops and flips on images of
    32 pixels and more, no progress bar. In place; returns the model (in eval mode)."""
    fit(model, train_data, epochs=epochs, lr=lr, schedule="cosine", batch_size=batch_size,
        augment=augments(train_data), seed=seed, progress=False)
    return model


@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, data: ImageData, batch_size: int = 256,
                          only: Iterable[str] | None = None) -> nn.Module:
    """Reset the batch norms' running statistics and measure them again on `data` (a plain
    average over its batches; no weight changes), in place: what paper 05 does after a
    reduction to "the following layers", where our surgery keeps each remaining channel's
    sliced statistics. `only`: the names of the batch norms to reset (those after a reduced
    convolution); the others keep theirs. Leaves the model in eval mode and returns it."""
    norms = [m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and (only is None or name in set(only))]
    if only is not None and len(norms) != len(set(only)):
        raise ValueError(f"not batch norms of this model: {sorted(set(only) - {n for n, _ in model.named_modules()})}")
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    model.eval()
    for norm in norms:  # only these measure; every other layer runs as at inference
        norm.train()
    try:
        for images, _ in data.batches(batch_size, device=model_device(model)):
            model(images)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
    return model


def augments(data: ImageData) -> bool:
    """Whether the course trains on `data` with crops and flips: they help images of 32
    pixels and more (CIFAR-10); digits need none."""
    return data.shape[1] >= 32


def _scheduler(optimizer, schedule: str, lr: float, total_steps: int):
    """triangle: linear warm-up over the first fifth, then linear decay to zero (the fast
    CIFAR-10 recipes'); onecycle: PyTorch's cosine one-cycle; cosine: decay from the start."""
    warmup = max(1, round(0.2 * total_steps))
    if schedule == "triangle" and total_steps >= 8:  # fewer steps leave no warm-up to speak of
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
            (step + 1) / warmup, max(0.0, (total_steps - 1 - step) / (total_steps - warmup))))
    if schedule == "onecycle" and total_steps >= 8:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=0.25)
    if schedule in ("cosine", "onecycle", "triangle"):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


# ---------------------------------------------------------------- checkpoints


class CheckpointMismatch(RuntimeError):
    """A checkpoint file holds a different configuration from the one asked for."""


def checkpoint_path(config: dict, directory: Path | None = None) -> Path:
    """data/checkpoints/<model>-<dataset>-<hash of the whole configuration>.pt"""
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    prefix = "-".join(str(config[k]) for k in ("model", "dataset") if k in config)
    return (directory or data_home() / "checkpoints") / f"{prefix or 'model'}-{key}.pt"


def cached_training(config: dict, build: Callable[[], nn.Module],
                    train: Callable[[nn.Module], dict],
                    directory: Path | None = None) -> tuple[nn.Module, dict, bool]:
    """Load the model trained for exactly `config`, or build, train and save it.

    `train(model)` trains in place and returns a record (plain numbers and lists) that is
    saved beside the weights. Returns (model, record, loaded_from_disk). A file whose stored
    configuration differs from `config` is never loaded and never overwritten; one that is
    unreadable or fails its checksum (`storage.checked_load`) is moved aside and retrained.
    Training runs on a fork of torch's random number generators: the caller's generators are
    left as a load would leave them, so what a notebook draws next (dropout in a fine-tuning,
    a random plan) is the same whether its baseline was trained in this run or cached.
    """
    config = json.loads(json.dumps(config))  # plain JSON types, as they will be stored
    path = checkpoint_path(config, directory)
    model = build()
    with exclusive(path):  # another process training this one: wait for it, then load
        stored = checked_load(path, map_location="cpu")
        if stored is not None:
            if stored.get("config") != config:
                raise CheckpointMismatch(
                    f"{path} holds a different configuration ({stored.get('config')}) from the one "
                    f"asked for ({config}); move that file away to train this one")
            model.load_state_dict(stored["state_dict"])
            return model, stored["record"], True
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            record = train(model)
        state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        checked_save({"config": config, "state_dict": state, "record": record}, path)
    return model, record, False


@dataclass(frozen=True)
class Recipe:
    """How a baseline is trained from scratch: the fast CIFAR-10 recipes' ingredients that
    pay on a CPU (airbench's: label smoothing, a large batch, Nesterov SGD under a linear
    warm-up and decay, no weight decay on batch norm, 2-pixel translations and flips),
    the course's models unchanged. `benchmarks/baselines.py` compares it with the old one."""

    lr: float  # peak learning rate
    batch_size: int = 256
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    schedule: str = "triangle"
    padding: int = CROP_PADDING
    decay_norms: bool = False

    def as_config(self) -> dict:
        return asdict(self)


# The AlexNet and SqueezeNet have no batch norm: a rate past 0.03 makes the AlexNet diverge
# in the first steps, and left SqueezeNet 1.1 at chance (0.1, quick profile, 2026-12-02).
BASELINE_RECIPES = {
    "alexnet": Recipe(lr=0.03),
    "squeezenet1_1": Recipe(lr=0.03),
    "vgg16": Recipe(lr=0.2),
    "vgg16_gap": Recipe(lr=0.2),
    "resnet18": Recipe(lr=0.2),
}
DEFAULT_RECIPE = Recipe(lr=0.1)

# The recipe before November 2026, for `benchmarks/baselines.py` (one-cycle cosine, batch
# 128, decay everywhere, 4-pixel crops, no label smoothing).
CLASSIC_RECIPES = {name: Recipe(lr=0.02 if name == "alexnet" else 0.1, batch_size=128,
                                label_smoothing=0.0, schedule="onecycle", padding=4,
                                decay_norms=True) for name in BASELINE_RECIPES}


@dataclass
class Baseline:
    model: nn.Module
    config: dict
    history: History
    train: ImageData  # the profile's training images, for a notebook's fine-tuning (the
    # baseline itself saw `config["train_size"]` images, these first among them)
    val: ImageData  # the images held out of the training split (5,000, or the profile's test_size if fewer), for every choice
    test: ImageData  # the profile's test images, for reporting only
    loaded: bool  # True when it came from a checkpoint, False when trained just now


def baseline(model_name: str, dataset: str, profile: Profile, *, seed: int = 0,
             device: torch.device | str = "cpu", fallback: str | None = None,
             progress: bool = True, pretrained: bool = False,
             recipe: Recipe | None = None) -> Baseline:
    """The dense starting model of a notebook: from its checkpoint, or trained now and saved
    (`pretrained`: starting from ImageNet weights, see `models.imagenet_weights`). It trains
    on the profile's `baseline_train_size` images for `profile.epochs_for(model_name, dataset)`
    epochs with `recipe` (by default the model's entry in BASELINE_RECIPES)."""
    baseline_data = load_dataset(dataset, "train", profile.baseline_train_size,
                                 fallback=fallback, device=device)
    train_data = baseline_data.subset(slice(0, profile.train_size))  # the first of the same images
    name = train_data.info.name
    test_data = load_dataset(name, "test", profile.test_size, device=device)
    val_data = load_dataset(name, "val", profile.test_size, device=device)  # no larger than test
    recipe = recipe or BASELINE_RECIPES.get(model_name, DEFAULT_RECIPE)
    augment = augments(train_data)
    epochs = profile.epochs_for(model_name, name)
    config = dict(format=CHECKPOINT_FORMAT, model=model_name, width=profile.width,
                  dataset=name, source=train_data.label, train_size=len(baseline_data),
                  epochs=epochs, augment=augment, seed=seed, **recipe.as_config())
    if pretrained:
        config["init"] = "imagenet"

    def build():
        torch.manual_seed(seed)
        return build_model(model_name, profile.width, train_data.num_classes,
                           train_data.shape[0], train_data.shape[-1], pretrained).to(device)

    def train(model):
        history = fit(model, baseline_data, epochs=epochs, augment=augment, seed=seed,
                      progress=progress, description=f"{model_name} on {train_data.label}",
                      **recipe.as_config())
        return history.as_dict()

    model, record, loaded = cached_training(config, build, train)
    model.to(device, memory_format=torch.channels_last).eval()
    return Baseline(model, config, History(**record), train_data, val_data, test_data, loaded)
