"""MNIST and Fashion-MNIST from the original files in ../shared/data (the paper's split), and the
same reading, split and resizing of small generated files in their format."""

import numpy as np
import pytest
import torch

from robustal.data import dataset_info, load_dataset, mnist as mnist_module
from robustal.data.idx import load_idx

# label counts from ../shared/data/README.md
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist(data_root):
    return load_dataset("mnist", data_root=data_root)


def test_mnist_is_resized_to_32_and_split_like_the_paper(mnist):
    assert (len(mnist.train), len(mnist.validation), len(mnist.test)) == (60000, 5000, 5000)
    for split in (mnist.train, mnist.validation, mnist.test):
        assert split.images.dtype == torch.uint8
        assert tuple(split.images.shape[1:]) == (1, 32, 32)
    assert mnist.num_classes == 10 and mnist.image_shape == (1, 32, 32)


def test_mnist_label_counts_match_the_readme(mnist):
    assert np.bincount(mnist.train.labels.numpy(), minlength=10).tolist() == MNIST_TRAIN_COUNTS
    test_counts = np.bincount(mnist.validation.labels.numpy(), minlength=10) + np.bincount(
        mnist.test.labels.numpy(), minlength=10
    )
    assert test_counts.tolist() == MNIST_TEST_COUNTS


def test_image_size_28_keeps_the_native_images(data_root, mnist):
    native = load_dataset("mnist", data_root=data_root, image_size=28)
    assert tuple(native.train.images.shape) == (60000, 1, 28, 28)
    assert native.train.images.float().mean().item() == pytest.approx(33.318, abs=1e-3)  # README
    assert native.validation.labels.tolist() == mnist.validation.labels.tolist()  # same order, same split
    assert dataset_info("mnist").native_size == 28 and dataset_info("mnist").default_size == 32
    assert dataset_info("mnist").augment is False


def test_fashion_mnist_is_balanced(data_root):
    fashion = load_dataset("fashion-mnist", data_root=data_root, image_size=28)
    assert (len(fashion.train), len(fashion.validation), len(fashion.test)) == (60000, 5000, 5000)
    assert np.bincount(fashion.train.labels.numpy(), minlength=10).tolist() == [6000] * 10
    test_counts = np.bincount(fashion.validation.labels.numpy(), minlength=10) + np.bincount(
        fashion.test.labels.numpy(), minlength=10
    )
    assert test_counts.tolist() == [1000] * 10


def test_files_in_the_official_format_load_split_and_resized(idx_root, monkeypatch):
    """Generated IDX files (12 train, 6 test images): train as written, the first 3 test images
    for validation (5,000 of the real ones), the rest for test; resized to 32 by default."""
    monkeypatch.setattr(mnist_module, "VALIDATION_SIZE", 3)
    folder = idx_root / "mnist"
    train, test = (load_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 3) for prefix in ("train", "t10k"))
    train_labels, test_labels = (load_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 1) for prefix in ("train", "t10k"))
    native = load_dataset("mnist", data_root=idx_root, image_size=28)
    assert torch.equal(native.train.images[:, 0], train) and native.train.labels.tolist() == train_labels.tolist()
    assert torch.equal(native.validation.images[:, 0], test[:3]) and native.validation.labels.tolist() == test_labels[:3].tolist()
    assert torch.equal(native.test.images[:, 0], test[3:]) and native.test.labels.tolist() == test_labels[3:].tolist()
    resized = load_dataset("mnist", data_root=idx_root)
    assert tuple(resized.train.images.shape) == (12, 1, 32, 32) and resized.train.images.dtype == torch.uint8
    assert resized.validation.labels.tolist() == native.validation.labels.tolist()
