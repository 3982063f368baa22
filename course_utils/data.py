"""Datasets as tensors, and a batch iterator that never leaves the device.

`load_dataset("mnist" | "fashion-mnist" | "cifar10", split)` returns an `ImageData`:
uint8 images (N, C, H, W) and int64 labels, normalised only when a batch is drawn.
Local copies are tried first (the project's `data/`, the folders listed in
COURSE_DATA_DIRS, Debian's /usr/share/datasets), then torchvision's download; when
neither works the error says what to install or where to put the files. The decoded
tensors are cached under `data/cache/` so the next load takes milliseconds.

`ImageData.batches(...)` shuffles with a seeded generator and augments (random crop
with padding, horizontal flip) as batched tensor ops on the device: no DataLoader,
no worker processes, no per-sample Python.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .storage import checked_load, checked_save, data_home, move_aside

DATA_DIRS_ENV = "COURSE_DATA_DIRS"
SPLITS = ("train", "val", "test")
VALIDATION_SIZE = 5_000  # held out from the official training set, same images every run
CROP_PADDING = 2  # pixels of random translation (airbench's 2; the classic recipe pads 4)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flips: bool  # horizontal flips are a valid augmentation (not for digits)


DATASETS = {
    "mnist": DatasetInfo("mnist", "MNIST", tuple(str(d) for d in range(10)),
                         (0.1307,), (0.3081,), flips=False),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), (0.2860,), (0.3530,), flips=True),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), flips=True),
}


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on this machine nor downloadable."""


class ImageData:
    """Images (uint8, N x C x H x W) and labels of one split, with its normalisation."""

    def __init__(self, info: DatasetInfo, split: str, images: torch.Tensor,
                 labels: torch.Tensor, source: str):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("images must be uint8 N x C x H x W with one label each")
        self.info, self.split, self.source = info, split, source
        self.images, self.labels = images, labels
        self._on_device: dict[torch.device, ImageData] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageData({self.label}, {self.split}, {len(self)} images of "
                f"{tuple(self.images.shape[1:])}, on {self.device})")

    @property
    def label(self) -> str:
        """The dataset's name as a figure or table should give it ("CIFAR-10 (JPEG copy)")."""
        return self.info.title + (" (JPEG copy)" if "jpeg" in self.source.lower() else "")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def num_classes(self) -> int:
        return len(self.info.classes)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def to(self, device: torch.device | str) -> ImageData:
        """The same data on `device`, copied once and remembered."""
        device = torch.device(device)
        if device == self.device:
            return self
        if device not in self._on_device:
            self._on_device[device] = ImageData(self.info, self.split, self.images.to(device),
                                                self.labels.to(device), self.source)
        return self._on_device[device]

    def subset(self, index: torch.Tensor | slice) -> ImageData:
        """The images at `index` (indices, a boolean mask or a slice)."""
        return ImageData(self.info, self.split, self.images[index], self.labels[index],
                         self.source)

    def shuffled_parts(self, parts: int, seed: int = 0) -> list[ImageData]:
        """The images in `parts` disjoint random slices of (nearly) equal size, seeded: one
        epoch of fine-tuning spread over several pruning steps, a slice per step."""
        if isinstance(parts, bool) or not (isinstance(parts, int) and 1 <= parts <= len(self)):
            raise ValueError(f"parts must be a whole number from 1 to {len(self)}, got {parts}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return [self.subset(chunk.to(self.device)) for chunk in order.chunk(parts)]

    def of_classes(self, classes) -> ImageData:
        """Only the images whose label is in `classes` (labels keep their original values)."""
        wanted = torch.as_tensor(list(classes), device=self.labels.device)
        return self.subset(torch.isin(self.labels, wanted))

    def relabel(self, mapping: dict[int, int], classes: tuple[str, ...]) -> ImageData:
        """The same images with label m replaced by mapping[m], for a task whose class
        names are `classes` (paper 01's superclasses)."""
        lookup = torch.tensor([mapping[m] for m in range(self.num_classes)],
                              device=self.labels.device)
        info = dataclasses.replace(self.info, classes=tuple(classes))
        return ImageData(info, self.split, self.images, lookup[self.labels], self.source)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images to the network's input scale."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        mean = torch.tensor(self.info.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.info.std, device=images.device).view(1, -1, 1, 1)
        return (images - mean) / std

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                seed: int = 0, device: torch.device | str | None = None,
                padding: int = CROP_PADDING) -> Batches:
        """An iterable of normalised (images, labels) batches; each pass is one epoch.
        `augment`: random crops of the image padded by `padding` pixels, and flips."""
        return Batches(self.to(device or self.device), batch_size, shuffle=shuffle,
                       augment=augment, seed=seed, padding=padding)

    def tensors(self, device: torch.device | str | None = None):
        """All images normalised, and the labels: for small sets used as one batch."""
        data = self.to(device or self.device)
        return data.normalize(data.images), data.labels


def require_images(data: ImageData, what: str = "the data") -> ImageData:
    """Refuse a set of no images: a criterion would score nothing, a fit train on nothing, an
    evaluation divide by zero; each used to return as if it had worked."""
    if len(data) == 0:
        raise ValueError(f"{what} holds no images: nothing to score, train on or measure")
    return data


class Batches:
    """Seeded epochs over an `ImageData` already on its device.

    Every sample is visited exactly once per epoch (the last batch may be smaller).
    Shuffling and augmentation draw from one CPU generator seeded by `seed`, so a run
    is reproducible on any device.
    """

    def __init__(self, data: ImageData, batch_size: int, *, shuffle: bool, augment: bool,
                 seed: int, padding: int = CROP_PADDING):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.data, self.batch_size = data, batch_size
        self.shuffle, self.augment, self.padding = shuffle, augment, padding
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self):
        data, device = self.data, self.data.device
        n = len(data)
        order = (torch.randperm(n, generator=self.generator).to(device) if self.shuffle
                 else torch.arange(n, device=device))
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            images = data.images[index].float().div_(255)
            if self.augment:
                images = random_crop(images, self.padding, self.generator)
                if data.info.flips:
                    images = random_flip(images, self.generator)
            yield data.normalize(images), data.labels[index]


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad every image with zeros and cut a random H x W window from each, in one gather."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = torch.rand(len(images), generator=generator).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


# ---------------------------------------------------------------- loading


def load_dataset(name: str, split: str = "train", size: int | None = None, *,
                 fallback: str | None = None,
                 device: torch.device | str = "cpu") -> ImageData:
    """One split ("train", "val" or "test") of a dataset, as tensors on `device`.

    `val` is a fixed set of 5,000 images held out of the official training set, and
    `train` is the rest, so choices made on `val` never see the test set. `size` keeps
    that many images (a fixed, class-mixed subset; None keeps all). With `fallback`,
    a missing dataset is replaced by the named one, with a banner saying so.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
        raise ValueError(f"size must be a whole, positive number of images or None, got {size!r}")
    try:
        images, labels, source = _load_cached(name, "test" if split == "test" else "train")
    except DatasetUnavailable as missing:
        if fallback is None:
            raise
        _banner(f"{DATASETS[name].title} IS NOT AVAILABLE: USING {DATASETS[fallback].title} "
                f"INSTEAD. Every number below is for {DATASETS[fallback].title}.", str(missing))
        return load_dataset(fallback, split, size, device=device)
    order = _fixed_order(len(labels))
    if split == "val":
        order = order[:VALIDATION_SIZE]
    elif split == "train":
        order = order[VALIDATION_SIZE:]
    if size is not None:
        order = order[:size]
    data = ImageData(DATASETS[name], split, images[order], labels[order], source)
    return data.to(device)


def _fixed_order(n: int) -> torch.Tensor:
    """The same shuffled order of n indices on every machine and run."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))


def _banner(headline: str, detail: str) -> None:
    line = "!" * 78
    print(f"{line}\n!!! {headline}\n!!! {detail}\n{line}", flush=True)


def search_dirs() -> list[Path]:
    """Where local copies are looked for, in order."""
    extra = [Path(p) for p in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if p]
    return [data_home(), *extra, Path("/usr/share/datasets")]


FULL_SIZES = {"train": {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000},
              "test": {"mnist": 10_000, "fashion-mnist": 10_000, "cifar10": 10_000}}


def _load_cached(name: str, split: str):
    """A decoded split from the cache (checksummed: a corrupt file is moved aside and
    decoded again), else decoded now and cached. A cache of a partial copy is not trusted:
    each load looks again for a full one (COURSE_DATA_DIRS may point at it now)."""
    cache = data_home() / "cache" / f"{name}-{split}.pt"
    full = FULL_SIZES[split][name]
    stored = checked_load(cache)
    if stored is not None and len(stored["labels"]) == full:
        try:
            check_split(name, stored["images"], stored["labels"], cache)
            return stored["images"], stored["labels"], stored["source"]
        except ValueError as error:  # cached from a damaged copy before copies were checked
            move_aside(cache, f"{error}; it is decoded again")
            stored = None
    images, labels, source = _read(name, split)
    check_split(name, images, labels, source)
    if len(labels) != full:
        _banner(f"{DATASETS[name].title} {split}: {len(labels):,} of its {full:,} images, from {source}",
                "a partial copy: every number of this run is on fewer images than the papers'")
    if stored is None or len(labels) > len(stored["labels"]):
        checked_save({"images": images, "labels": labels, "source": source}, cache)
    return images, labels, source


def check_split(name: str, images: torch.Tensor, labels: torch.Tensor, where) -> None:
    """A decoded split must be uint8 images of the dataset's shape, one label each, every label
    a class of the dataset: a damaged copy is refused here, naming it, not in a later loss."""
    channels, side = (3, 32) if name == "cifar10" else (1, 28)
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (channels, side, side):
        raise ValueError(f"{where}: images of shape {tuple(images.shape[1:])} ({images.dtype}), expected "
                         f"uint8 images of {(channels, side, side)}: a damaged copy of {DATASETS[name].title}?")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{where}: {len(images):,} images but {labels.numel():,} labels: a damaged or "
                         f"mismatched copy of {DATASETS[name].title}")
    classes = len(DATASETS[name].classes)
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise ValueError(f"{where}: labels range from {int(labels.min())} to {int(labels.max())}, but "
                         f"{DATASETS[name].title} has classes 0 to {classes - 1}: a damaged copy?")


def _read(name: str, split: str):
    """Decode a split from the first local copy found, else from torchvision's download."""
    readers = {"mnist": _read_idx_copy, "fashion-mnist": _read_idx_copy,
               "cifar10": _read_cifar_copy}
    for folder in search_dirs():
        found = readers[name](name, split, folder)
        if found is not None:
            return found
    return _download(name, split)


_IDX_FOLDERS = {"mnist": ("MNIST/raw", "mnist"),
                "fashion-mnist": ("FashionMNIST/raw", "fashion-mnist")}


def _read_idx_copy(name: str, split: str, folder: Path):
    prefix = "train" if split == "train" else "t10k"
    for sub in _IDX_FOLDERS[name]:
        images_file = _idx_file(folder / sub, f"{prefix}-images-idx3-ubyte")
        labels_file = _idx_file(folder / sub, f"{prefix}-labels-idx1-ubyte")
        if images_file and labels_file:
            images = torch.from_numpy(read_idx(images_file))
            labels = torch.from_numpy(read_idx(labels_file)).long()
            if images.ndim != 3 or labels.ndim != 1:
                raise ValueError(f"{images_file.parent}: expected N x 28 x 28 images and N labels, found "
                                 f"{tuple(images.shape)} and {tuple(labels.shape)}: a damaged copy")
            images = images.unsqueeze(1)
            return images, labels, str(images_file.parent)
    return None


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, as a uint8 array; a file whose
    header and length disagree (truncated, or a lying header) is refused, naming it."""
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}): a damaged copy?") from error
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: its header is cut short: a truncated copy")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + math.prod(shape)
    if len(raw) != expected:
        raise ValueError(f"{path}: its header announces {shape} ({expected:,} bytes) but the file has "
                         f"{len(raw):,}: a truncated or damaged copy; replace it")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def _read_cifar_copy(name: str, split: str, folder: Path):
    import torchvision

    if (folder / "cifar-10-batches-py").is_dir():
        dataset = torchvision.datasets.CIFAR10(folder, train=split == "train", download=False)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(dataset.targets), str(folder / "cifar-10-batches-py")
    jpeg_split = folder / "cifar10-jpeg" / split
    if jpeg_split.is_dir():
        return (*_decode_image_folder(jpeg_split), str(jpeg_split))
    return None


def _decode_image_folder(folder: Path):
    """Decode an ImageFolder tree (one folder per class, sorted) into uint8 tensors."""
    import torchvision
    from PIL import Image

    dataset = torchvision.datasets.ImageFolder(folder)
    if tuple(dataset.classes) != DATASETS["cifar10"].classes:
        raise DatasetUnavailable(f"{folder} does not hold the ten CIFAR-10 class folders")
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB")) for path, _ in dataset.samples])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), torch.tensor(dataset.targets)


def _download(name: str, split: str):
    import torchvision

    classes = {"mnist": torchvision.datasets.MNIST,
               "fashion-mnist": torchvision.datasets.FashionMNIST,
               "cifar10": torchvision.datasets.CIFAR10}
    root = data_home() / "downloads"
    try:
        dataset = classes[name](root, train=split == "train", download=True)
    except Exception as error:  # no network, a mirror down, a corrupt archive
        where = ", ".join(str(d) for d in search_dirs())
        raise DatasetUnavailable(
            f"{DATASETS[name].title} was not found in {where} and could not be downloaded "
            f"({type(error).__name__}: {error}). Put a copy in data/ (torchvision's layout) "
            f"or list its folder in {DATA_DIRS_ENV}"
            + (", or run: apt-get install dataset-fashion-mnist" if name == "fashion-mnist"
               else "") + ".") from error
    images = torch.as_tensor(np.asarray(dataset.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(dataset.targets).long(), str(root)
