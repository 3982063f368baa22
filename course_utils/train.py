"""Training and evaluation, and baselines cached as checkpoints.

`fit` is plain SGD with momentum under a one-cycle, cosine or constant schedule, with
one progress bar and a `History` to plot. `evaluate` gives overall and per-class
accuracy in one pass. `baseline(...)` is how every notebook gets its starting model:
it loads the checkpoint trained for exactly that configuration, or trains it at the
profile's budget and saves it (atomically, under a name derived from the configuration).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ImageData, load_dataset
from .device import autocast, autocast_dtype
from .models import build_model
from .profiles import Profile
from .storage import atomic_save, data_home

SCHEDULES = ("onecycle", "cosine", "constant")
CHECKPOINT_FORMAT = 1  # bump when the training recipe changes, so old checkpoints are not reused


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class Evaluation:
    accuracy: float  # fraction of images classified correctly
    per_class: list[float]  # accuracy on the images of each class
    loss: float  # mean cross-entropy
    predictions: torch.Tensor  # predicted class of every image (on the CPU)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, batch_size: int = 1000) -> Evaluation:
    """Accuracy overall and per class, and mean loss, on all of `data` (eval mode)."""
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
                      (loss_sum / len(data)).item(), predicted.cpu())


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
        weight_decay: float = 5e-4, schedule: str = "onecycle", label_smoothing: float = 0.0,
        augment: bool = False, seed: int = 0, progress: bool = True,
        description: str = "training") -> History:
    """Train `model` on its own device with SGD; returns the loss history. In place; the
    model is left in eval mode (ready to evaluate or prune)."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    device = model_device(model)
    batches = train_data.batches(batch_size, shuffle=True, augment=augment, seed=seed,
                                 device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay, nesterov=momentum > 0)
    scheduler = _scheduler(optimizer, schedule, lr, epochs * len(batches))
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(device) == torch.float16)
    history, start = History(), time.perf_counter()
    bar = tqdm(total=epochs * len(batches), desc=description, disable=not progress,
               leave=False)
    for _ in range(epochs):
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
        if val_data is not None:
            history.val_accuracy.append(evaluate(model, val_data).accuracy)
        bar.set_postfix(loss=f"{history.epoch_loss[-1]:.3f}")
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def finetune(model: nn.Module, train_data: ImageData, epochs: int = 1, *, lr: float = 0.01,
             batch_size: int = 128, seed: int = 0) -> nn.Module:
    """The course's fine-tuning after a pruning step, the same for every pruned model a
    notebook compares: SGD from a small rate down a cosine, crops and flips on images of
    32 pixels and more, no progress bar. In place; returns the model (in eval mode)."""
    fit(model, train_data, epochs=epochs, lr=lr, schedule="cosine", batch_size=batch_size,
        augment=augments(train_data), seed=seed, progress=False)
    return model


@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, data: ImageData, batch_size: int = 256) -> nn.Module:
    """Reset every batch norm's running statistics and measure them again on `data` (a
    plain average over its batches; no weight changes), in place: what paper 05 does
    after a reduction, where our surgery keeps each remaining channel's sliced statistics.
    Leaves the model in eval mode and returns it."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    model.train()
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
    if schedule == "onecycle" and total_steps >= 8:  # fewer steps leave no warm-up to speak of
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=0.25)
    if schedule in ("cosine", "onecycle"):
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
    configuration differs from `config` is never loaded and never overwritten.
    """
    config = json.loads(json.dumps(config))  # plain JSON types, as they will be stored
    path = checkpoint_path(config, directory)
    model = build()
    if path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("config") != config:
            raise CheckpointMismatch(
                f"{path} holds a different configuration ({stored.get('config')}) from the one "
                f"asked for ({config}); move that file away to train this one")
        model.load_state_dict(stored["state_dict"])
        return model, stored["record"], True
    record = train(model)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    atomic_save({"config": config, "state_dict": state, "record": record}, path)
    return model, record, False


# Peak learning rates of the one-cycle schedule for training each model from scratch. The
# AlexNet uses twice paper 01's 0.01: at 0.01 it reached 98.47% on MNIST in the quick
# profile's 4 epochs, at 0.02 98.73%.
BASELINE_RECIPES = {
    "alexnet": dict(lr=0.02, weight_decay=5e-4),
    "vgg16": dict(lr=0.1, weight_decay=5e-4),
    "vgg16_gap": dict(lr=0.1, weight_decay=5e-4),
    "resnet18": dict(lr=0.1, weight_decay=5e-4),
}


@dataclass
class Baseline:
    model: nn.Module
    config: dict
    history: History
    train: ImageData  # the training images it saw (the profile's subset)
    val: ImageData  # the 5,000 images held out of the training split, for every choice
    test: ImageData  # the profile's test images, for reporting only
    loaded: bool  # True when it came from a checkpoint, False when trained just now


def baseline(model_name: str, dataset: str, profile: Profile, *, seed: int = 0,
             device: torch.device | str = "cpu", fallback: str | None = None,
             progress: bool = True, pretrained: bool = False) -> Baseline:
    """The dense starting model of a notebook: from its checkpoint, or trained now and saved
    (`pretrained`: starting from ImageNet weights, see `models.imagenet_weights`)."""
    train_data = load_dataset(dataset, "train", profile.train_size, fallback=fallback,
                              device=device)
    test_data = load_dataset(train_data.info.name, "test", profile.test_size, device=device)
    val_data = load_dataset(train_data.info.name, "val", device=device)
    recipe = BASELINE_RECIPES.get(model_name, dict(lr=0.05, weight_decay=5e-4))
    augment = augments(train_data)
    config = dict(format=CHECKPOINT_FORMAT, model=model_name, width=profile.width,
                  dataset=train_data.info.name, source=train_data.label,
                  train_size=len(train_data), epochs=profile.epochs,
                  batch_size=profile.batch_size, augment=augment, seed=seed, **recipe)
    if pretrained:
        config["init"] = "imagenet"

    def build():
        torch.manual_seed(seed)
        return build_model(model_name, profile.width, train_data.num_classes,
                           train_data.shape[0], train_data.shape[-1], pretrained).to(device)

    def train(model):
        history = fit(model, train_data, epochs=profile.epochs, batch_size=profile.batch_size,
                      augment=augment, seed=seed, progress=progress,
                      description=f"{model_name} on {train_data.label}", **recipe)
        return history.as_dict()

    model, record, loaded = cached_training(config, build, train)
    model.to(device).eval()
    return Baseline(model, config, History(**record), train_data, val_data, test_data, loaded)
