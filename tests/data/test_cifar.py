"""CIFAR-10 from small python pickle batches, as the extracted folder and as the tar.gz archive."""

import collections
import pickle

import numpy as np
import pytest
import torch

from dataset_files import write_cifar_archive
from robustal.data import dataset_info, load_dataset
from robustal.errors import DataError


def test_folder_layout_order_and_split(cifar_folder_root, cifar_files):
    batches, _ = cifar_files
    dataset = load_dataset("cifar10", data_root=cifar_folder_root)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (20, 3, 3)
    assert dataset.image_shape == (3, 32, 32) and dataset.train.images.dtype == torch.uint8
    train_data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    # rows are 1024 red, 1024 green, 1024 blue values, each 32 rows of 32
    np.testing.assert_array_equal(dataset.train.images.numpy(), train_data.reshape(20, 3, 32, 32))
    assert dataset.train.labels.tolist() == train_labels
    test = batches["test_batch"]
    assert dataset.validation.labels.tolist() == test[b"labels"][:3]
    assert dataset.test.labels.tolist() == test[b"labels"][3:]
    np.testing.assert_array_equal(dataset.test.images[0].numpy(), test[b"data"][3].reshape(3, 32, 32))


def test_archive_gives_the_same_dataset(cifar_folder_root, cifar_archive_root):
    from_folder = load_dataset("cifar10", data_root=cifar_folder_root)
    from_archive = load_dataset("cifar10", data_root=cifar_archive_root)
    for split in ("train", "validation", "test"):
        assert torch.equal(getattr(from_folder, split).images, getattr(from_archive, split).images)
        assert torch.equal(getattr(from_folder, split).labels, getattr(from_archive, split).labels)


def test_registry_entry():
    info = dataset_info("cifar10")
    assert (info.default_model, info.native_size, info.augment) == ("resnet18", 32, True)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match=r"missing .*cifar-10-python.tar.gz.*robustal data download cifar10"):
        load_dataset("cifar10", data_root=tmp_path)


def test_archive_without_a_batch(tmp_path, cifar_files):
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    write_cifar_archive(archive, {name: content for name, content in cifar_files[1].items() if name != "data_batch_3"})
    with pytest.raises(DataError, match=rf"{archive}: the archive lacks data_batch_3"):
        load_dataset("cifar10", data_root=tmp_path)


def test_truncated_archive(cifar_archive_root):
    archive = cifar_archive_root / "cifar10" / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(DataError, match=rf"{archive}: cannot read it as a gzip tar archive"):
        load_dataset("cifar10", data_root=cifar_archive_root)


def test_folder_missing_a_batch(cifar_folder_root):
    (cifar_folder_root / "cifar10" / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="lacks test_batch"):
        load_dataset("cifar10", data_root=cifar_folder_root)


def _replace_batch(root, name, batch_bytes):
    (root / "cifar10" / "cifar-10-batches-py" / name).write_bytes(batch_bytes)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, r"b'data' must be uint8 of shape \(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, r"4 images but labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must be 0..9"),
        ({"data": np.zeros((2, 3072), np.uint8)}, r"expected a dict with keys b'data' and b'labels'"),
    ],
)
def test_wrong_batch_content_is_named(cifar_folder_root, batch, message):
    _replace_batch(cifar_folder_root, "data_batch_2", pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=message) as error:
        load_dataset("cifar10", data_root=cifar_folder_root)
    assert "data_batch_2" in str(error.value)


def test_pickles_with_other_objects_are_refused(cifar_folder_root):
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"extra": collections.OrderedDict()}
    _replace_batch(cifar_folder_root, "test_batch", pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR-10 python batch \(refusing to load collections.OrderedDict"):
        load_dataset("cifar10", data_root=cifar_folder_root)


def test_truncated_batch(cifar_folder_root, cifar_files):
    _replace_batch(cifar_folder_root, "data_batch_1", cifar_files[1]["data_batch_1"][:500])
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR-10 python batch"):
        load_dataset("cifar10", data_root=cifar_folder_root)
