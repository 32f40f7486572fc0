"""SVHN from small .mat files written like the originals (X (32, 32, 3, N), y (N, 1), 10 = zero)."""

import numpy as np
import pytest
import scipy.io
import torch

from robustal.data import dataset_info, load_dataset
from robustal.data import svhn as svhn_module
from robustal.errors import DataError


def test_svhn_layout_labels_and_split(svhn_root):
    root, arrays = svhn_root
    dataset = load_dataset("svhn", data_root=root)
    train_images, train_labels = arrays["train"]
    test_images, test_labels = arrays["test"]
    # 8 test images: the first half validates (the paper's 5,000 of 10,000)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (12, 4, 4)
    assert dataset.image_shape == (3, 32, 32) and dataset.train.images.dtype == torch.uint8
    # images[n, c, h, w] == X[h, w, c, n]
    np.testing.assert_array_equal(dataset.train.images.numpy(), train_images.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(dataset.test.images.numpy(), test_images[..., 4:].transpose(3, 2, 0, 1))
    # label 10 is the digit 0
    assert dataset.train.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert dataset.validation.labels.tolist() == (test_labels[:4, 0] % 10).tolist()
    assert dataset.num_classes == 10


def test_only_the_first_images_are_kept(svhn_root, monkeypatch):
    root, arrays = svhn_root
    monkeypatch.setitem(svhn_module.KEPT, "train", 5)  # the paper: 50,000 of 73,257
    monkeypatch.setitem(svhn_module.KEPT, "test", 6)  # the paper: 10,000 of 26,032
    dataset = load_dataset("svhn", data_root=root)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (5, 3, 3)
    np.testing.assert_array_equal(dataset.train.images.numpy(), arrays["train"][0][..., :5].transpose(3, 2, 0, 1))


def test_registry_entry():
    info = dataset_info("svhn")
    assert (info.default_model, info.native_size, info.default_size, info.augment) == ("vgg8", 32, 32, True)


def test_missing_file_says_where_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"missing file .*svhn/train_32x32.mat.*robustal data download svhn"):
        load_dataset("svhn", data_root=tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"X": np.zeros((32, 32, 5), np.uint8), "y": np.ones((5, 1), np.uint8)}, r"'X' must be uint8 of shape \(32, 32, 3, N\)"),
        ({"X": np.zeros((32, 32, 3, 5), np.float32), "y": np.ones((5, 1), np.uint8)}, "must be uint8"),
        ({"X": np.zeros((32, 32, 3, 5), np.uint8), "y": np.ones((4, 1), np.uint8)}, "5 images but 4 labels"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]], np.uint8)}, r"labels must be 1..10"),
        ({"images": np.zeros((32, 32, 3, 2), np.uint8)}, r"expected variables 'X' and 'y'.*\['images'\]"),
    ],
)
def test_wrong_content_is_named(svhn_root, content, message):
    root, _ = svhn_root
    path = root / "svhn" / "train_32x32.mat"
    scipy.io.savemat(path, content)
    with pytest.raises(DataError, match=message) as error:
        load_dataset("svhn", data_root=root)
    assert str(path) in str(error.value)


def test_corrupt_file_is_named(svhn_root):
    root, _ = svhn_root
    path = root / "svhn" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=rf"{path}: cannot read it as a MATLAB .mat file.*download it again"):
        load_dataset("svhn", data_root=root)
