"""Streaming model outputs over pool samples, in bounded batches, and the scores built on them.

Every model call here runs the model in eval mode (restoring its mode afterwards) on at most
``context.batch_size`` samples at a time; outputs are gathered on the CPU as float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from robustal.acquisition.base import PoolContext
from robustal.errors import ConfigError
from robustal.runtime import batch_slices, model_mode, to_float

BatchFunction = Callable[[torch.Tensor], torch.Tensor]


def stream_batches(context: PoolContext, indices: np.ndarray, compute: BatchFunction, gradients: bool = False) -> torch.Tensor:
    """``compute(x)`` for consecutive batches `x` (float in [0, 1], on the context's device) of
    training-set `indices`, concatenated along dimension 0 on the CPU.

    The model is in eval mode throughout. Without `gradients`, everything runs under
    ``torch.inference_mode``; with them, gradient recording is on (for input gradients).
    """
    outputs = []
    index_tensor = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    grad_mode = torch.enable_grad() if gradients else torch.inference_mode()
    with model_mode(context.model, training=False), grad_mode:
        for part in batch_slices(len(index_tensor), context.batch_size):
            x = to_float(context.images[index_tensor[part]].to(context.device, non_blocking=True))
            outputs.append(compute(x).detach().float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax in float32 (half-precision logits are upcast first)."""
    return torch.softmax(logits.float(), dim=1)


def predict_probabilities(context: PoolContext, indices: np.ndarray) -> torch.Tensor:
    """Softmax probabilities (n, classes), float32 on the CPU, for training-set `indices`."""
    return stream_batches(context, indices, lambda x: softmax(context.model(x)))


def embeddings(context: PoolContext, indices: np.ndarray) -> torch.Tensor:
    """Penultimate embeddings (n, d), float32 on the CPU, for training-set `indices`."""
    return stream_batches(context, indices, context.model.embed)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of a probability matrix: H(p) = -sum_c p_c log p_c.

    Reduces over the last dimension, so a stack (T, n, classes) gives (T, n).
    """
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=-1)


def top_two(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two largest probabilities of each row and their classes, each of shape (n, 2).

    Sorted descending and stable, so of two equal probabilities the lower class comes first.
    """
    probabilities = torch.as_tensor(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ConfigError(f"need a probability matrix (n, classes >= 2), got shape {tuple(probabilities.shape)}")
    values, classes = torch.sort(probabilities, dim=1, descending=True, stable=True)
    return values[:, :2], classes[:, :2]

