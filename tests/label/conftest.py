"""Fixtures of the labeling tests: a folder of digits written as PNG files (`digits_folder`) and a
small project on it (`project`); the helpers are in label_helpers.py (import them from there, not from here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from label_helpers import CLASSES, write_digits
from run_helpers import PROJECT

from robustal.label.project import LabelProject


@pytest.fixture
def digits_folder(tmp_path) -> tuple[Path, dict[Path, int]]:
    """120 digits as PNGs in ``tmp_path/images`` and each file's true class."""
    folder = tmp_path / "images"
    return folder, write_digits(folder, 120)


@pytest.fixture
def project(tmp_path, digits_folder) -> LabelProject:
    """A project on `digits_folder`: 10 validation items, then 20 initial, rounds of 10 up to 40."""
    folder, _ = digits_folder
    opened = LabelProject.init(tmp_path / "project", folder, CLASSES, None, dict(PROJECT), validation=10)
    yield opened
    opened.close()
