"""The model contract: ``model(x) -> logits`` and ``model.embed(x) -> penultimate embedding``."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """A classifier split into ``features`` (input -> embedding) and ``head`` (embedding -> logits).

    Inputs are float images in [0, 1] of shape (N, C, H, W); any normalisation happens inside
    the model, so attacks work in pixel space.
    """

    def __init__(self, features: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.spec: dict = {}  # set by build_model: the registry arguments that rebuild this model

    @property
    def embedding_size(self) -> int:
        return self.head.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate embedding (input of the last linear layer), shape (N, embedding_size)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
