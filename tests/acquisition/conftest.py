"""Fixtures for the acquisition tests: a small trained-free model on digits, and a model whose
softmax output is a hand-made probability matrix (so the right selection is known)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustal.acquisition import PoolContext
from robustal.models import Classifier, build_model

LABELED = np.arange(0, 200, 10)  # 20 labeled samples, spread over the training set
# scattered, unsorted indices into the training set, never labeled
POOL = np.random.default_rng(1).permutation(np.setdiff1d(np.arange(3, 250, 2), LABELED))


def seeded_model(name: str, image_size: int, seed: int = 0) -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, 1, 10, image_size)


@pytest.fixture
def digits_context(digits) -> PoolContext:
    """An untrained small CNN (with BatchNorm) on digits; batches of 16 so pools span batches."""
    model = seeded_model("small_cnn", digits.image_size)
    return PoolContext(model, digits.train.images, LABELED, torch.device("cpu"), batch_size=16)


@pytest.fixture
def pool() -> np.ndarray:
    return POOL.copy()


class _IndexReader(nn.Module):
    """Reads the sample index written into the first two pixels and returns log p[index]."""

    def __init__(self, probabilities: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("log_probabilities", torch.log(probabilities.clamp_min(1e-30)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = torch.round(x[:, 0, 0, :2] * 255).long()
        return self.log_probabilities[pixels[:, 0] * 256 + pixels[:, 1]]


def _probability_context(probabilities, batch_size: int = 7) -> PoolContext:
    """A context over len(probabilities) images whose model outputs softmax = `probabilities`.

    Sample i's image holds i in its first two pixels; the head is the identity, so logits are
    log p and the embedding is log p too. Labeled set: empty.
    """
    probabilities = torch.as_tensor(probabilities, dtype=torch.float64).float()
    count, classes = probabilities.shape
    images = torch.zeros(count, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(count) // 256
    images[:, 0, 0, 1] = torch.arange(count) % 256
    head = nn.Linear(classes, classes)
    with torch.no_grad():
        head.weight.copy_(torch.eye(classes))
        head.bias.zero_()
    model = Classifier(_IndexReader(probabilities), head)
    return PoolContext(model, images, np.empty(0, dtype=np.int64), torch.device("cpu"), batch_size=batch_size)


@pytest.fixture
def probability_context():
    """Factory: ``probability_context(probabilities)`` -> a context whose model outputs them."""
    return _probability_context
