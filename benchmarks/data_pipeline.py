"""Images per second of the course's training loop against a standard DataLoader pipeline.

Both train the same model (same width, seed, batch size, optimizer) for the same number
of steps on the same CIFAR-10 training images with the same augmentation (random crop
with 4-pixel padding, horizontal flip). The DataLoader side is what most tutorials
write: a dataset that turns each uint8 image into a PIL image and applies torchvision's
RandomCrop, RandomHorizontalFlip, ToTensor and Normalize, batched by a DataLoader.

    python benchmarks/data_pipeline.py [--model vgg16] [--width 0.25] [--steps 40] [--workers 2]

The ratio depends on how much of a step the model's own compute takes: the smaller the
model, the more the per-image Python of the DataLoader side shows (try --width 0.0625).
"""

import argparse
import time

import torch
from PIL import Image
from torchvision import transforms

from course_utils.data import load_dataset
from course_utils.models import build_model
from course_utils.train import fit


class PilDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: array -> PIL image -> transforms."""

    def __init__(self, data, transform):
        self.images = data.images.permute(0, 2, 3, 1).numpy()
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def dataloader_images_per_second(model, data, batch_size, steps, workers):
    pipeline = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(data.info.mean, data.info.std)])
    loader = torch.utils.data.DataLoader(PilDataset(data, pipeline), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    model.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for images, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return steps * batch_size / (time.perf_counter() - start)


def course_images_per_second(model, data, batch_size, steps):
    subset = data.subset(slice(0, steps * batch_size))  # exactly `steps` full batches
    history = fit(model, subset, epochs=1, lr=0.05, batch_size=batch_size, augment=True,
                  schedule="constant", progress=False)
    return steps * batch_size / history.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = load_dataset("cifar10", "train", args.steps * args.batch_size * 2)
    rates = {}
    for name in ("course", "dataloader"):
        torch.manual_seed(0)
        model = build_model(args.model, args.width)
        rates[name] = (course_images_per_second(model, data, args.batch_size, args.steps)
                       if name == "course" else
                       dataloader_images_per_second(model, data, args.batch_size, args.steps,
                                                    args.workers))
    print(f"{args.model} width {args.width}, batch {args.batch_size}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, DataLoader with {args.workers} workers")
    for name, rate in rates.items():
        print(f"  {name:10s} {rate:8.0f} images/s")
    print(f"  ratio      {rates['course'] / rates['dataloader']:8.2f}x")


if __name__ == "__main__":
    main()
