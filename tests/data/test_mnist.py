"""MNIST and Fashion-MNIST from the original files in ../shared/data (the paper's split)."""

import numpy as np
import pytest
import torch

from robustal.data import dataset_info, load_dataset

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
