"""Images per second of the course's training loop against a standard DataLoader pipeline.

Both train the same model (same width, seed, batch size, optimizer) for the same number
of steps on the same training images with the same augmentation as the course's baseline
recipe (CIFAR-10: random crop with 4-pixel padding and horizontal flip; digits: none).
The DataLoader side is what most tutorials write: a dataset that turns each uint8 image
into a PIL image and applies torchvision's transforms (RandomCrop, RandomHorizontalFlip
for CIFAR-10), ToTensor and Normalize, batched by a DataLoader.

    python benchmarks/data_pipeline.py [--width 0.25] [--steps 40] [--workers 2] [--repeats 3]
    python benchmarks/data_pipeline.py --model vgg16 --dataset cifar10 --width 0.0625

By default it measures both baselines of notebook 00 (AlexNet on MNIST, VGG-16 on
CIFAR-10) at the width of the smoke and quick profiles. It also times each pipeline
delivering the same batches with no model: the training ratio depends on how much of a
step the model's own compute takes, the data-only ratio on the pipelines alone.
"""

import argparse
import time

import torch
from PIL import Image
from torchvision import transforms

from course_utils.data import load_dataset
from course_utils.models import build_model
from course_utils.train import augments, fit


class PilDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: array -> PIL image -> transforms."""

    def __init__(self, data, transform):
        images = data.images.permute(0, 2, 3, 1)
        self.images = (images.squeeze(3) if images.shape[3] == 1 else images).numpy()  # PIL: HxW for grey
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def dataloader(data, batch_size, workers, augment):
    crop_and_flip = [transforms.RandomCrop(data.shape[-1], padding=4), transforms.RandomHorizontalFlip()]
    pipeline = transforms.Compose([*(crop_and_flip if augment else []),
                                   transforms.ToTensor(), transforms.Normalize(data.info.mean, data.info.std)])
    return torch.utils.data.DataLoader(PilDataset(data, pipeline), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, drop_last=True,
                                       persistent_workers=workers > 0)


def batches_from(loader, steps):
    """`steps` batches, starting a new epoch of `loader` when one runs out."""
    done = 0
    while True:
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return


def dataloader_images_per_second(model, data, batch_size, steps, workers, augment):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    model.train()
    start = time.perf_counter()
    for images, labels in batches_from(dataloader(data, batch_size, workers, augment), steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def data_only_images_per_second(loader, batch_size, steps):
    start = time.perf_counter()
    for _ in batches_from(loader, steps):
        pass
    return steps * batch_size / (time.perf_counter() - start)


def course_images_per_second(model, data, batch_size, steps, augment):
    subset = data.subset(slice(0, steps * batch_size))  # exactly `steps` full batches
    history = fit(model, subset, epochs=1, lr=0.05, batch_size=batch_size, augment=augment,
                  schedule="constant", progress=False)
    return steps * batch_size / history.seconds


def measurements(model_name, data, args, augment):
    """Images/s of each pipeline, training and delivering batches alone, in one fixed order."""
    def fresh_model():
        torch.manual_seed(0)
        return build_model(model_name, args.width, data.num_classes, data.shape[0], data.shape[-1])

    return {
        ("course", "training"): lambda: course_images_per_second(
            fresh_model(), data, args.batch_size, args.steps, augment),
        ("dataloader", "training"): lambda: dataloader_images_per_second(
            fresh_model(), data, args.batch_size, args.steps, args.workers, augment),
        ("course", "data only"): lambda: data_only_images_per_second(
            data.batches(args.batch_size, shuffle=True, augment=augment), args.batch_size, args.steps),
        ("dataloader", "data only"): lambda: data_only_images_per_second(
            dataloader(data, args.batch_size, args.workers, augment), args.batch_size, args.steps),
    }


def compare(model_name, dataset, args):
    data = load_dataset(dataset, "train", args.steps * args.batch_size * 2)
    augment = augments(data)  # as the course's baselines are trained
    rates = {}
    for _ in range(args.repeats):  # best of the repeats: the first pays the warm-up
        for key, measure in measurements(model_name, data, args, augment).items():
            rates[key] = max(rates.get(key, 0.0), measure())
    print(f"{model_name} on {data.label}, width {args.width}, batch {args.batch_size}, "
          f"{args.steps} steps, augmentation {'crop+flip' if augment else 'none'}, "
          f"{torch.get_num_threads()} threads, DataLoader with {args.workers} workers, "
          f"best of {args.repeats}")
    print(f"  {'':10s} {'training':>10s} {'data only':>10s}   (images/s)")
    for name in ("course", "dataloader"):
        print(f"  {name:10s} {rates[name, 'training']:10.0f} {rates[name, 'data only']:10.0f}")
    ratios = [rates["course", kind] / rates["dataloader", kind] for kind in ("training", "data only")]
    print(f"  {'ratio':10s} {ratios[0]:9.2f}x {ratios[1]:9.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="one model (default: both baselines of notebook 00)")
    parser.add_argument("--dataset", default="cifar10", help="with --model: mnist, fashion-mnist or cifar10")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    pairs = [(args.model, args.dataset)] if args.model else [("alexnet", "mnist"), ("vgg16", "cifar10")]
    for model_name, dataset in pairs:
        compare(model_name, dataset, args)


if __name__ == "__main__":
    main()
