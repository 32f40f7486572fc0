"""SVHN from the original ``train_32x32.mat`` / ``test_32x32.mat`` in ``<data root>/svhn/``.

Like the paper: label 10 (the digit zero) becomes 0, the first 50,000 training and the first
10,000 test images are kept, and the first 5,000 of those test images validate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from robustal.data.dataset import ImageDataset, Split, split_validation
from robustal.data.registry import DatasetInfo, register_dataset
from robustal.errors import DataError, decoding_errors

NAME = "svhn"
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
KEPT = {"train": 50_000, "test": 10_000}  # the paper keeps the first 50,000 / 10,000
VALIDATION_SIZE = 5000


def read_svhn_mat(path: Path, limit: int | None = None) -> Split:
    """The first `limit` samples of an SVHN ``.mat`` file: ``X`` uint8 (32, 32, 3, N) becomes
    images (N, 3, 32, 32), ``y`` (N, 1) with labels 1..10 becomes 0..9 (10 is the digit 0).

    Raises `DataError` naming the file when it is missing, unreadable or not in that format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{NAME}: missing file {path}; put the original {path.name} in {path.parent}/ "
            f"or run `robustal data download {NAME}`"
        )
    # scipy raises ValueError, TypeError, OSError, zlib.error ... on damaged files, numpy on odd variables
    with decoding_errors(f"{path}: cannot read it as a MATLAB .mat file ({{reason}}); download it again"):
        content = scipy.io.loadmat(path, variable_names=["X", "y"])
        return _svhn_split(path, content.get("X"), content.get("y"), limit)


def _svhn_split(path: Path, images, labels, limit: int | None) -> Split:
    """`read_svhn_mat`'s split of the variables ``X`` and ``y``, checked against the SVHN format."""
    if images is None or labels is None:
        found = sorted(name for name, *_ in scipy.io.whosmat(path))
        raise DataError(f"{path}: expected variables 'X' and 'y' (SVHN format), found {found}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), got {images.dtype} {images.shape}")
    labels = labels.reshape(-1)
    if labels.shape[0] != images.shape[3]:
        raise DataError(f"{path}: {images.shape[3]} images but {labels.shape[0]} labels")
    if not np.isin(labels, np.arange(1, 11)).all():  # also refuses NaN and fractions in a float 'y'
        raise DataError(f"{path}: SVHN labels must be 1..10 (10 is the digit 0), got {labels.min()}..{labels.max()}")
    count = images.shape[3] if limit is None else min(limit, images.shape[3])
    images = np.ascontiguousarray(np.transpose(images[..., :count], (3, 2, 0, 1)))
    labels = labels[:count].astype(np.int64) % 10
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def load_svhn(data_root: Path) -> ImageDataset:
    """SVHN as in the paper: 50,000 train; of the first 10,000 test images, 5,000 validate, 5,000 test.

    Files with fewer test images (small test files) split their test images in half.
    """
    folder = Path(data_root) / NAME
    train = read_svhn_mat(folder / FILES["train"], KEPT["train"])
    test = read_svhn_mat(folder / FILES["test"], KEPT["test"])
    return split_validation(NAME, train, test, num_classes=10, validation_size=min(VALIDATION_SIZE, len(test) // 2))


register_dataset(
    DatasetInfo(
        name=NAME,
        loader=load_svhn,
        default_model="vgg8",
        native_size=32,
        default_size=32,
        description="SVHN, first 50,000 train; first 10,000 test: 5,000 validation, 5,000 test",
        augment=True,
    )
)
