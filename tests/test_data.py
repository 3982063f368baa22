import pytest
import torch
import torchvision

from course_utils import data as course_data
from course_utils.data import (DATASETS, DatasetUnavailable, ImageData, load_dataset,
                               random_crop, random_flip)


def synthetic(n=1000, channels=3, size=8, dataset="cifar10"):
    """Images whose every pixel is the sample's index mod 256, labels = the index."""
    index = torch.arange(n)
    images = (index % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, channels, size, size)
    return ImageData(DATASETS[dataset], "train", images.contiguous(), index, "synthetic")


def test_mnist_is_read_exactly_in_its_official_order():
    images, labels, _ = course_data._read("mnist", "test")
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_normalised_mnist_has_zero_mean_and_unit_std():
    train = load_dataset("mnist", "train")
    images, _ = train.tensors()
    assert abs(images.mean().item()) < 0.01 and abs(images.std().item() - 1) < 0.01


def test_cifar10_test_split_has_the_known_channel_means():
    test = load_dataset("cifar10", "test")
    assert test.shape == (3, 32, 32) and len(test) == 10_000
    means = test.images.float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.494, 0.485, 0.450]), atol=0.006)
    assert "CIFAR-10" in test.label


def test_fashion_mnist_when_installed():
    try:
        train = load_dataset("fashion-mnist", "train", 100)
    except DatasetUnavailable as missing:
        pytest.skip(f"Fashion-MNIST is optional: {missing}")
    assert train.shape == (1, 28, 28) and train.classes[0] == "T-shirt/top"


def test_validation_is_held_out_of_train_and_sizes_are_prefixes():
    train, val = load_dataset("mnist", "train"), load_dataset("mnist", "val")
    assert len(train) + len(val) == 60_000 and len(val) == course_data.VALIDATION_SIZE
    small = load_dataset("mnist", "train", 500)
    assert torch.equal(small.images, train.images[:500])
    assert torch.equal(load_dataset("mnist", "val").labels, val.labels)
    assert len(set(small.labels.tolist())) == 10  # a subset mixes every class


@pytest.mark.parametrize("call, message", [
    (lambda: load_dataset("imagenet"), "mnist, fashion-mnist, cifar10"),
    (lambda: load_dataset("mnist", "validation"), "train, val, test"),
    (lambda: load_dataset("mnist", "train", 0), "positive"),
])
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No local copy anywhere and a download that fails, as on an offline machine."""
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(course_data, "search_dirs", lambda: [tmp_path])

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)


def test_a_missing_dataset_says_where_to_put_it(nowhere):
    with pytest.raises(DatasetUnavailable, match="COURSE_DATA_DIRS") as error:
        load_dataset("mnist", "test")
    assert "no network" in str(error.value)


def test_a_fallback_is_announced_loudly(nowhere, monkeypatch, capsys):
    fake = synthetic(20, channels=1, size=28, dataset="fashion-mnist")
    monkeypatch.setattr(course_data, "_read",
                        lambda name, split: (fake.images, fake.labels % 10, "fake copy")
                        if name == "fashion-mnist" else course_data._download(name, split))
    data = load_dataset("mnist", "test", fallback="fashion-mnist")
    assert data.info.name == "fashion-mnist"
    assert "INSTEAD" in capsys.readouterr().out


def test_each_sample_is_visited_exactly_once_per_epoch():
    batches = synthetic(1003).batches(64, shuffle=True, augment=True, seed=3)
    epochs = [torch.cat([labels for _, labels in batches]) for _ in range(2)]
    for seen in epochs:
        assert torch.equal(seen.sort().values, torch.arange(1003))
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled
    again = synthetic(1003).batches(64, shuffle=True, augment=True, seed=3)
    assert torch.equal(torch.cat([labels for _, labels in again]), epochs[0])


def test_shuffled_parts_cover_every_image_once_and_are_seeded():
    data = synthetic(1003)
    parts = data.shuffled_parts(4, seed=1)
    assert [len(p) for p in parts] == [251, 251, 251, 250]
    assert torch.equal(torch.cat([p.labels for p in parts]).sort().values, torch.arange(1003))
    assert torch.equal(data.shuffled_parts(4, seed=1)[2].labels, parts[2].labels)
    assert not torch.equal(data.shuffled_parts(4, seed=2)[0].labels, parts[0].labels)
    with pytest.raises(ValueError, match="parts must be"):
        data.shuffled_parts(0)


def test_batches_are_normalised_images_of_their_labels():
    data = synthetic(300)
    for images, labels in data.batches(128):
        pixel = (labels % 256).float() / 255
        expected = (pixel[:, None] - torch.tensor(data.info.mean)) / torch.tensor(data.info.std)
        assert torch.allclose(images[:, :, 0, 0], expected, atol=1e-6)


def test_random_crop_cuts_a_window_of_the_zero_padded_image():
    images = torch.rand(16, 3, 8, 8)
    cropped = random_crop(images, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for image, crop in zip(padded, cropped):
        windows = [image[:, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(crop, window) for window in windows)
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_random_flip_mirrors_some_images_and_keeps_the_rest():
    images = torch.rand(64, 3, 8, 8)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(2)) for f, i in zip(flipped, images)]
    kept = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 10 < sum(mirrored) < 54


def test_digits_are_never_flipped():
    data = synthetic(64, channels=1, dataset="mnist")
    data.images[:, :, :, 0] = 255  # a bright left edge that a flip would move right
    for images, _ in data.batches(64, augment=True, seed=1):
        raw = images * data.info.std[0] + data.info.mean[0]
        assert (raw[:, :, :, -1] < 0.99).all()


def test_relabel_maps_every_label_and_names_the_new_classes():
    data = synthetic(30, dataset="mnist")
    data.labels = data.labels % 10
    merged = data.relabel({m: m % 3 for m in range(10)}, ("a", "b", "c"))
    assert torch.equal(merged.labels, data.labels % 3) and merged.classes == ("a", "b", "c")
    assert merged.images is data.images
