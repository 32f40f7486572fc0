"""Helpers of the labeling tests: digits written as PNG files and the simulated annotator (a plain
module: `from conftest import ...` would find another folder's conftest.py; the settings of a
tiny project are `run_helpers.PROJECT`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from robustal.label.project import LabelProject

CLASSES = [str(digit) for digit in range(10)]


def write_digits(folder: Path, count: int, start: int = 0, class_folders: bool = False) -> dict[Path, int]:
    """`count` digits (from index `start`) as PNG files in `folder` (in class subfolders when
    `class_folders`); the true class of each written file."""
    digits = load_digits()
    truth = {}
    for index in range(start, start + count):
        pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
        label = int(digits.target[index])
        path = folder / str(label) / f"{index:04d}.png" if class_folders else folder / f"digit-{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        truth[path.resolve()] = label
    return truth


def true_label(project: LabelProject, item_id: int, truth: dict[Path, int]) -> int:
    """The simulated annotator's answer for `item_id`."""
    return truth[Path(project.item(item_id).path)]
