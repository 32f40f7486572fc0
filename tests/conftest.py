"""Shared fixtures: the data root (../shared/data), small datasets and trained models.

Helpers that test files share live in plain modules with unique names, importable from every
test folder (pyproject's pytest ``pythonpath``): run_helpers (the tiny settings), cli_helpers
(running the command line), study_helpers, html_tables, and a folder's own (label/label_helpers,
data/dataset_files). Never ``from conftest import``: that finds whichever conftest.py pytest
imported last (``pytest tests/data/test_fuzz.py tests/report`` gives tests/report's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from robustal.data import load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(1)  # tests run two at a time (pytest -n 2) on two cores


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the official mnist/ and fashion-mnist/ files (``$ROBUSTAL_DATA`` or
    ../shared/data), for the tests that need the real files; the others use generated ones."""
    root = Path(os.environ.get("ROBUSTAL_DATA", SHARED_DATA))
    if not (root / "mnist").is_dir():
        pytest.skip(f"needs the official MNIST files, not under {root.resolve()} (set ROBUSTAL_DATA to their folder)")
    return root


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_digits_model(digits):
    """small_cnn trained normally on the digits train split (about 95% test accuracy)."""
    from robustal.models import build_model
    from robustal.training import StandardTraining, TrainingPlan, fit

    torch.manual_seed(0)
    model = build_model("small_cnn", 1, 10, 8)
    plan = TrainingPlan(StandardTraining(), score=lambda m: 0.0, epochs=15, batch_size=32, lr=3e-3)
    fit(model, plan, digits.train, torch.device("cpu"))
    return model.eval()
