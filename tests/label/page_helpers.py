"""Helpers of the labeling page's tests: a folder of small images to label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digit_images(folder: Path, count: int) -> Path:
    """The first `count` scikit-learn digits (8x8, grayscale) as PNG files in `folder` (made)."""
    folder.mkdir(parents=True)
    digits = load_digits()
    for index in range(count):
        pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"digit-{index:03d}.png")
    return folder
