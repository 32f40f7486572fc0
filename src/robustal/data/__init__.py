"""Datasets: a registry of loaders returning in-memory uint8 splits (train / validation / test).

>>> from robustal.data import load_dataset
>>> dataset = load_dataset("digits")
"""

from robustal.data import digits as _digits  # noqa: F401  (registers "digits")
from robustal.data import mnist as _mnist  # noqa: F401  (registers "mnist", "fashion-mnist")
from robustal.data.dataset import ImageDataset, Split, resize_images
from robustal.data.paths import resolve_data_root
from robustal.data.registry import DatasetInfo, available_datasets, dataset_info, load_dataset, register_dataset

__all__ = [
    "DatasetInfo",
    "ImageDataset",
    "Split",
    "available_datasets",
    "dataset_info",
    "load_dataset",
    "register_dataset",
    "resize_images",
    "resolve_data_root",
]
