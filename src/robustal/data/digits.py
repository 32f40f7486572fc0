"""scikit-learn's bundled 8x8 digits: the offline default dataset (no files needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustal.data.dataset import ImageDataset, Split
from robustal.data.registry import DatasetInfo, register_dataset

VALIDATION_SIZE = 360
TEST_SIZE = 360


def load_digits_dataset(data_root: Path | None = None) -> ImageDataset:
    """1,797 digits split (stratified, fixed seed 0) into 1,077 train, 360 validation, 360 test.

    Pixel values 0..16 are scaled to uint8 0..255 so that every dataset shares the [0, 1] range.
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes seconds to import
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=TEST_SIZE, random_state=0, stratify=labels)
    train, validation = train_test_split(rest, test_size=VALIDATION_SIZE, random_state=0, stratify=labels[rest])

    def split(part: np.ndarray) -> Split:
        return Split(torch.from_numpy(images[part]), torch.from_numpy(labels[part]))

    return ImageDataset("digits", split(train), split(validation), split(test), num_classes=10)


register_dataset(
    DatasetInfo(
        name="digits",
        loader=load_digits_dataset,
        default_model="small_cnn",
        native_size=8,
        default_size=8,
        description="scikit-learn 8x8 digits, bundled (1,077 / 360 / 360)",
    )
)
