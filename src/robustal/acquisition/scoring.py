"""Streaming model outputs over pool samples, in bounded batches, without gradients."""

from __future__ import annotations

import numpy as np
import torch

from robustal.acquisition.base import PoolContext
from robustal.runtime import batch_slices, model_mode, to_float


def _stream(context: PoolContext, indices: np.ndarray, embed: bool) -> torch.Tensor:
    outputs = []
    index_tensor = torch.as_tensor(indices, dtype=torch.long)
    with model_mode(context.model, training=False), torch.inference_mode():
        for part in batch_slices(len(indices), context.batch_size):
            x = to_float(context.images[index_tensor[part]].to(context.device, non_blocking=True))
            out = context.model.embed(x) if embed else torch.softmax(context.model(x).float(), dim=1)
            outputs.append(out.float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def predict_probabilities(context: PoolContext, indices: np.ndarray) -> torch.Tensor:
    """Softmax probabilities (n, classes), float32 on the CPU, for training-set `indices`."""
    return _stream(context, indices, embed=False)


def embeddings(context: PoolContext, indices: np.ndarray) -> torch.Tensor:
    """Penultimate embeddings (n, d), float32 on the CPU, for training-set `indices`."""
    return _stream(context, indices, embed=True)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of a probability matrix."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1)
