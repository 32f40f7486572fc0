"""Datasets: a registry of loaders returning in-memory uint8 splits (train / validation / test).

Registered: ``digits`` (bundled), ``mnist``, ``fashion-mnist``, ``svhn``, ``cifar10``; a path
to a ``.npz`` file names a user's dataset (see `robustal.data.npz`), and so do ``folder:PATH``
and ``csv:FILE.csv`` for image files (see `robustal.data.folder`). Downloads with checksums:
`robustal.data.download`; training augmentation: `robustal.data.augment`.

>>> from robustal.data import load_dataset
>>> dataset = load_dataset("digits")
"""

from robustal.data import cifar as _cifar  # noqa: F401  (registers "cifar10")
from robustal.data import digits as _digits  # noqa: F401  (registers "digits")
from robustal.data import folder as _folder  # noqa: F401  (lets "folder:PATH" and "csv:FILE" name datasets)
from robustal.data import mnist as _mnist  # noqa: F401  (registers "mnist", "fashion-mnist")
from robustal.data import npz as _npz  # noqa: F401  (lets ".npz" paths name datasets)
from robustal.data import svhn as _svhn  # noqa: F401  (registers "svhn")
from robustal.data.dataset import ImageDataset, Split, resize_images
from robustal.data.paths import resolve_data_root
from robustal.data.registry import (
    DatasetInfo,
    available_datasets,
    dataset_info,
    load_dataset,
    register_dataset,
    register_dataset_scheme,
    register_file_format,
)

__all__ = [
    "DatasetInfo",
    "ImageDataset",
    "Split",
    "available_datasets",
    "dataset_info",
    "load_dataset",
    "register_dataset",
    "register_dataset_scheme",
    "register_file_format",
    "resize_images",
    "resolve_data_root",
]
